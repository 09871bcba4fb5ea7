"""Identity documents: validation of Spanish DNI and NIE numbers, and passports."""

from __future__ import annotations

import re

CHECK_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
_DNI = re.compile(r"^[0-9]{8}[A-Z]$")
_NIE = re.compile(r"^[XYZ][0-9]{7}[A-Z]$")
_PASSPORT = re.compile(r"^[A-Z0-9]{5,20}$")
_NIE_PREFIX = {"X": "0", "Y": "1", "Z": "2"}


class InvalidDocument(ValueError):
    """The document number is malformed or its check letter is wrong."""


def check_letter(number: int) -> str:
    """The DNI check letter of an eight-digit number."""
    return CHECK_LETTERS[number % 23]


def normalise(number: str) -> str:
    """Upper-case and strip spaces and dashes, as people type them."""
    return number.strip().upper().replace(" ", "").replace("-", "")


def validate_dni(number: str) -> str:
    """Return the normalised DNI or raise ``InvalidDocument`` saying why."""
    value = normalise(number)
    if not _DNI.match(value):
        raise InvalidDocument("a DNI is 8 digits and a check letter, e.g. 12345678Z")
    if check_letter(int(value[:8])) != value[8]:
        raise InvalidDocument("DNI check letter does not match the number")
    return value


def validate_nie(number: str) -> str:
    """Return the normalised NIE or raise ``InvalidDocument`` saying why."""
    value = normalise(number)
    if not _NIE.match(value):
        raise InvalidDocument("a NIE is X, Y or Z, 7 digits and a check letter, e.g. X1234567L")
    if check_letter(int(_NIE_PREFIX[value[0]] + value[1:8])) != value[8]:
        raise InvalidDocument("NIE check letter does not match the number")
    return value


def validate_passport(number: str) -> str:
    """Return the normalised passport number or raise ``InvalidDocument``."""
    value = normalise(number)
    if not _PASSPORT.match(value):
        raise InvalidDocument("a passport number is 5 to 20 letters and digits")
    return value


def make_dni(number: int) -> str:
    """The full DNI for an eight-digit number (for synthetic data and tests)."""
    return f"{number:08d}{check_letter(number)}"


def make_nie(prefix: str, number: int) -> str:
    """The full NIE for a prefix X/Y/Z and a seven-digit number."""
    return f"{prefix}{number:07d}{check_letter(int(_NIE_PREFIX[prefix] + f'{number:07d}'))}"
