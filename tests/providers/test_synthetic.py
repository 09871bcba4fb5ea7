"""The synthetic population: deterministic, valid documents, plausible spreads."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from onceonly.identity import validate_dni, validate_nie
from onceonly.providers import synthetic
from onceonly.providers.synthetic import FISCAL_YEARS, LATEST_FISCAL_YEAR, find, population


def digest(size: int = 3000, seed: int = 20260101) -> str:
    numbers = "\n".join(r.document_number for r in population(size, seed))
    return hashlib.sha256(numbers.encode()).hexdigest()


def test_same_seed_same_population() -> None:
    first, first_digest = population()[:5], digest()
    population.cache_clear()  # recompute rather than compare a cached tuple with itself
    assert population()[:5] == first
    assert digest() == first_digest
    assert population() is population()  # cached
    assert digest(seed=1) != first_digest


def test_smaller_population_is_a_prefix() -> None:
    # One stream of draws per resident, in order: a smaller size gives the same first residents.
    assert population(100) == population()[:100]


def test_documents_unique_and_valid() -> None:
    residents = population()
    assert len(residents) == 3000
    assert len({r.document_number for r in residents}) == len(residents)
    for r in residents:
        validate = validate_dni if r.document_type == "DNI" else validate_nie
        assert r.document_type in {"DNI", "NIE"}
        assert validate(r.document_number) == r.document_number
    share_dni = sum(r.document_type == "DNI" for r in residents) / len(residents)
    assert 0.80 < share_dni < 0.90


def test_attribute_spreads() -> None:
    residents = population()
    n = len(residents)
    municipalities = Counter(r.municipality_code for r in residents)
    assert set(municipalities) == {"28079", "08019", "41091", "46250"}
    assert municipalities.most_common(1)[0][0] == "28079"
    assert {r.household_size for r in residents} == {1, 2, 3, 4, 5, 6}
    for r in residents:
        assert tuple(year for year, _ in r.yearly_income) == FISCAL_YEARS
        assert all(isinstance(amount, int) and amount >= 0 for _, amount in r.yearly_income)
    below = sum(r.income(LATEST_FISCAL_YEAR) < 18_000 for r in residents) / n
    assert 0.3 < below < 0.7
    assert 0.85 < sum(r.tax_compliant for r in residents) / n < 0.95
    assert 0.10 < sum(r.registered_unemployed for r in residents) / n < 0.20
    assert 0.88 < sum(r.social_security_compliant for r in residents) / n < 0.96
    for known in ("known_to_registry", "known_to_tax", "known_to_employment"):
        missing = sum(not getattr(r, known) for r in residents)
        assert 1 <= missing <= n * 0.03, known


def test_income_for_unheld_year_is_key_error() -> None:
    with pytest.raises(KeyError):
        population()[0].income(2019)


def test_find() -> None:
    resident = find(lambda r: r.document_type == "NIE" and r.municipality_code == "41091")
    assert resident.document_type == "NIE" and resident.municipality_code == "41091"
    with pytest.raises(LookupError):
        find(lambda r: r.household_size > 6)


def test_index_keys() -> None:
    index = synthetic.index(lambda r: r.known_to_tax)
    assert all(key == (r.document_type, r.document_number) and r.known_to_tax for key, r in index.items())
