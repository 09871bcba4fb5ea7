"""Finding identity document numbers in free text (onceonly.identity.find_document_number)."""

from __future__ import annotations

import pytest

from onceonly.identity import find_document_number, make_dni, make_nie


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"applicant {make_dni(12345678)}", "DNI"),
        (f"applicant {make_dni(12345678).lower()}", "DNI"),
        ("applicant 12.345.678-Z", "DNI"),
        ("applicant 12345678 Z, again", "DNI"),
        (f"EXP-{make_dni(87654321)}", "DNI"),
        (f"foreign resident {make_nie('Y', 1234567)}", "NIE"),
        ("foreign resident X-1234567-L", "NIE"),
    ],
)
def test_numbers_as_people_write_them_are_found(text: str, kind: str) -> None:
    assert find_document_number(text) == kind


@pytest.mark.parametrize(
    "text",
    [
        "Ley 39/2015 art. 28",
        "Ley 12/2023 art. 17",
        "Real Decreto 1/2024, de 9 de enero",
        "EXP-2026-0001",
        "Eligibility check for a rent subsidy application",
        "12345678A",  # the wrong check letter: not a DNI
        "case 123456789Z",  # nine digits: not a DNI
        "consent form CF-991",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert find_document_number(text, passports=True) is None


def test_passport_shaped_words_count_only_where_asked() -> None:
    assert find_document_number("passport PAA123456", passports=True) == "passport"
    assert find_document_number("EXP202601") is None
