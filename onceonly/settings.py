"""Settings shared by the broker and the providers: the reference addresses and how flags are read."""

from __future__ import annotations

REFERENCE_PROVIDER_TARGETS = {
    "registry": "127.0.0.1:50061",
    "tax": "127.0.0.1:50062",
    "employment": "127.0.0.1:50063",
}
"""Where the reference providers listen by default, and where the broker looks for them."""


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); ``ValueError`` otherwise."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected 1/0, true/false, yes/no or on/off, got {text!r}")
