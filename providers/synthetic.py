"""A reproducible synthetic population for the reference adapters, demos and tests.

No real person is in it: document numbers are drawn at random (with valid check letters),
and every attribute comes from one seeded ``random.Random``, so the same ``(size, seed)``
always yields the same residents (random.Random is seeded explicitly, never from the clock).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from onceonly.identity import make_dni, make_nie

FISCAL_YEARS: tuple[int, ...] = (2023, 2024, 2025)
"""The fiscal years the synthetic tax agency holds declared income for."""

LATEST_FISCAL_YEAR = 2025
"""The latest closed fiscal year: the default when a query names none."""

DEFAULT_SIZE = 3000
DEFAULT_SEED = 20260101

# INE municipality codes and their weights: a Madrid-heavy population, as in a pilot there.
MUNICIPALITIES: tuple[tuple[str, int], ...] = (
    ("28079", 70),  # Madrid
    ("08019", 12),  # Barcelona
    ("41091", 9),  # Sevilla
    ("46250", 9),  # Valencia
)

_DNI_SHARE = 0.85
_TAX_COMPLIANT = 0.90
_UNEMPLOYED = 0.15
_SOCIAL_SECURITY_COMPLIANT = 0.92
# A handful of residents unknown to each agency, so SUBJECT_NOT_FOUND happens in demos.
_UNKNOWN_TO_AGENCY = 0.01
_NO_INCOME = 0.06
# Log-normal income around a median of about 19,000 EUR: many below 18,000, many above.
_INCOME_MEDIAN_EUR = 19_000
_INCOME_SIGMA = 0.6


@dataclass(frozen=True)
class Resident:
    """One synthetic resident and what each agency knows about them."""

    document_type: str
    """``"DNI"`` or ``"NIE"``."""
    document_number: str
    municipality_code: str
    """INE municipality code of registered residence (5 digits)."""
    household_size: int
    yearly_income: tuple[tuple[int, int], ...]
    """``(fiscal_year, declared income in whole euros)`` for each of :data:`FISCAL_YEARS`."""
    tax_compliant: bool
    registered_unemployed: bool
    social_security_compliant: bool
    known_to_registry: bool
    known_to_tax: bool
    known_to_employment: bool

    @property
    def key(self) -> tuple[str, str]:
        """``(document_type, document_number)``: how adapters index residents."""
        return (self.document_type, self.document_number)

    def income(self, fiscal_year: int) -> int:
        """Declared income for ``fiscal_year``; ``KeyError`` if the year is not held."""
        for year, amount in self.yearly_income:
            if year == fiscal_year:
                return amount
        raise KeyError(fiscal_year)


def _document(rng: random.Random, taken: set[str]) -> tuple[str, str]:
    # Redraw on collision: document numbers must be unique for O(1) lookups to be meaningful.
    while True:
        if rng.random() < _DNI_SHARE:
            kind, number = "DNI", make_dni(rng.randint(10_000_000, 99_999_999))
        else:
            kind, number = "NIE", make_nie(rng.choice("XYZ"), rng.randint(0, 9_999_999))
        if number not in taken:
            taken.add(number)
            return kind, number


def _incomes(rng: random.Random) -> tuple[tuple[int, int], ...]:
    if rng.random() < _NO_INCOME:
        return tuple((year, 0) for year in FISCAL_YEARS)
    base = rng.lognormvariate(math.log(_INCOME_MEDIAN_EUR), _INCOME_SIGMA)
    out = []
    for year in FISCAL_YEARS:
        # Year-to-year drift, so a resident can cross a threshold between years.
        base *= 1 + rng.gauss(0.02, 0.08)
        out.append((year, max(0, round(base))))
    return tuple(out)


def _resident(rng: random.Random, taken: set[str]) -> Resident:
    kind, number = _document(rng, taken)
    codes, weights = zip(*MUNICIPALITIES, strict=True)
    return Resident(
        document_type=kind,
        document_number=number,
        municipality_code=rng.choices(codes, weights)[0],
        household_size=rng.choices((1, 2, 3, 4, 5, 6), (25, 30, 20, 15, 7, 3))[0],
        yearly_income=_incomes(rng),
        tax_compliant=rng.random() < _TAX_COMPLIANT,
        registered_unemployed=rng.random() < _UNEMPLOYED,
        social_security_compliant=rng.random() < _SOCIAL_SECURITY_COMPLIANT,
        known_to_registry=rng.random() >= _UNKNOWN_TO_AGENCY,
        known_to_tax=rng.random() >= _UNKNOWN_TO_AGENCY,
        known_to_employment=rng.random() >= _UNKNOWN_TO_AGENCY,
    )


@functools.lru_cache(maxsize=8)
def population(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED) -> tuple[Resident, ...]:
    """``size`` residents drawn deterministically from ``seed`` (cached per ``(size, seed)``)."""
    if size < 0:
        raise ValueError("population size must not be negative")
    rng = random.Random(seed)
    taken: set[str] = set()
    return tuple(_resident(rng, taken) for _ in range(size))


def find(
    predicate: Callable[[Resident], bool], size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED
) -> Resident:
    """The first resident matching ``predicate``; ``LookupError`` if none does.

    For demos and tests, e.g. ``find(lambda r: r.known_to_tax and not r.tax_compliant)``.
    """
    for resident in population(size, seed):
        if predicate(resident):
            return resident
    raise LookupError(f"no resident in population(size={size}, seed={seed}) matches the predicate")


def index(
    known: Callable[[Resident], bool], size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED
) -> dict[tuple[str, str], Resident]:
    """Residents for which ``known`` holds, keyed by ``(document_type, document_number)``."""
    return {r.key: r for r in population(size, seed) if known(r)}
