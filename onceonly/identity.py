"""Identity documents: validation of Spanish DNI and NIE numbers, and passports."""

from __future__ import annotations

import re

CHECK_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
# Whole-string patterns, always used with fullmatch: "$" would also match before a trailing newline.
_DNI = re.compile(r"[0-9]{8}[A-Z]")
_NIE = re.compile(r"[XYZ][0-9]{7}[A-Z]")
_PASSPORT = re.compile(r"[A-Z0-9]{5,20}")
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
    if not _DNI.fullmatch(value):
        raise InvalidDocument("a DNI is 8 digits and a check letter, e.g. 12345678Z")
    if check_letter(int(value[:8])) != value[8]:
        raise InvalidDocument("DNI check letter does not match the number")
    return value


def validate_nie(number: str) -> str:
    """Return the normalised NIE or raise ``InvalidDocument`` saying why."""
    value = normalise(number)
    if not _NIE.fullmatch(value):
        raise InvalidDocument("a NIE is X, Y or Z, 7 digits and a check letter, e.g. X1234567L")
    if check_letter(int(_NIE_PREFIX[value[0]] + value[1:8])) != value[8]:
        raise InvalidDocument("NIE check letter does not match the number")
    return value


def validate_passport(number: str) -> str:
    """Return the normalised passport number or raise ``InvalidDocument``."""
    value = normalise(number)
    if not _PASSPORT.fullmatch(value):
        raise InvalidDocument("a passport number is 5 to 20 letters and digits")
    return value


def make_dni(number: int) -> str:
    """The full DNI for an eight-digit number (for synthetic data and tests)."""
    return f"{number:08d}{check_letter(number)}"


def make_nie(prefix: str, number: int) -> str:
    """The full NIE for a prefix X/Y/Z and a seven-digit number."""
    return f"{prefix}{number:07d}{check_letter(int(_NIE_PREFIX[prefix] + f'{number:07d}'))}"


# A DNI or NIE as people write it in prose: optional dots between digit groups, a space or dash
# before the letter. Matched on the upper-cased text, then confirmed by the check letter.
_DNI_IN_TEXT = re.compile(r"(?<![A-Z0-9])(\d{2}[.\s]?\d{3}[.\s]?\d{3})[\s-]?([A-Z])(?![A-Z0-9])")
_NIE_IN_TEXT = re.compile(r"(?<![A-Z0-9])([XYZ])[\s-]?(\d{7})[\s-]?([A-Z])(?![A-Z0-9])")
# Three letters and six digits as one word: the shape of a Spanish passport number.
_PASSPORT_IN_TEXT = re.compile(r"(?<![A-Z0-9])[A-Z]{3}\d{6}(?![A-Z0-9])")


def find_document_number(text: str, *, passports: bool = False) -> str | None:
    """The kind of identity document number that ``text`` contains ("DNI", "NIE", "passport"), or
    ``None``. DNI and NIE numbers count only with a matching check letter; passport-shaped words
    only when ``passports`` is set (ids such as case files may legitimately look like one)."""
    upper = text.upper()
    for m in _DNI_IN_TEXT.finditer(upper):
        digits = re.sub(r"\D", "", m.group(1))
        if check_letter(int(digits)) == m.group(2):
            return "DNI"
    for m in _NIE_IN_TEXT.finditer(upper):
        if check_letter(int(_NIE_PREFIX[m.group(1)] + m.group(2))) == m.group(3):
            return "NIE"
    if passports and _PASSPORT_IN_TEXT.search(upper):
        return "passport"
    return None
