"""Typed fields: the parameters and claims that certificate types declare.

Shared by the broker (which validates requests and provider answers against the catalog)
and the provider SDK (which declares what an adapter serves).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FieldType(enum.StrEnum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DATE = "date"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A declared parameter or claim."""

    name: str
    type: FieldType
    required: bool = True
    description: str = ""


MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer every JSON reader keeps exactly; larger integer claims are refused."""

_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def parse_parameter(spec: FieldSpec, text: str) -> Any:
    """Parse a parameter given as text; raise ``ValueError`` naming what is wrong."""
    if spec.type is FieldType.STRING:
        return text
    if spec.type is FieldType.INTEGER:
        try:
            return int(text.strip(), 10)
        except ValueError:
            raise ValueError(f"{spec.name} must be an integer, got {text[:40]!r}") from None
    if spec.type is FieldType.BOOLEAN:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{spec.name} must be true or false, got {text[:40]!r}")
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise ValueError(f"{spec.name} must be a date YYYY-MM-DD, got {text[:40]!r}") from None


def claim_matches(spec: FieldSpec, value: Any) -> bool:
    """Whether a claim value (JSON-like, as it came out of a protobuf Struct) fits its spec."""
    if spec.type is FieldType.BOOLEAN:
        return isinstance(value, bool)
    if spec.type is FieldType.INTEGER:
        # protobuf Struct carries numbers as doubles: accept whole numbers only.
        return (
            not isinstance(value, bool)
            and isinstance(value, (int, float))
            and float(value).is_integer()
            and abs(value) <= MAX_SAFE_INTEGER
        )
    if spec.type is FieldType.STRING:
        return isinstance(value, str)
    if isinstance(value, str):
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return False


def normalise_claims(specs: tuple[FieldSpec, ...], claims: Mapping[str, Any]) -> dict[str, Any]:
    """Check claims against their specs and return them typed (integers as ``int``).

    Raises ``ValueError`` naming the first missing, unexpected or ill-typed claim.
    """
    declared = {s.name: s for s in specs}
    unexpected = sorted(set(claims) - set(declared))
    if unexpected:
        raise ValueError(f"undeclared claim {unexpected[0]!r}")
    out: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in claims:
            if spec.required:
                raise ValueError(f"missing claim {spec.name!r}")
            continue
        value = claims[spec.name]
        if not claim_matches(spec, value):
            raise ValueError(f"claim {spec.name!r} is not a {spec.type.value}")
        out[spec.name] = int(value) if spec.type is FieldType.INTEGER else value
    return out
