"""What oversight asks of the trace ledger: a filter, a page of traces, and page tokens.

Filtering by provider, certificate type or check status reads JSON text columns: the SQL
(:mod:`onceonly.broker.trace_queries`) narrows the rows with ``LIKE`` on the JSON-encoded value,
then every row is confirmed here (:meth:`TraceFilter.matches_checks`) on the decoded values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from onceonly.broker.domain import CheckStatus, Decision, LegalBasisKind, TracedOutcome, TraceRecord
from onceonly.broker.errors import FieldViolation, InvalidRequest

__all__ = [
    "OUTCOMES",
    "TraceEntry",
    "TraceFilter",
    "TracePage",
    "decode_page_token",
    "encode_page_token",
    "range_violations",
]

OUTCOMES = frozenset({*(d.value for d in Decision), *(s.value for s in CheckStatus)})


@dataclass(frozen=True, slots=True)
class TraceFilter:
    """Which traces to list; ``None``/empty fields match all. ``until`` is exclusive."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    consumer_organization_id: str = ""
    officer_id: str = ""
    procedure_code: str = ""
    legal_basis_kind: LegalBasisKind | None = None
    provider_id: str = ""
    certificate_type_id: str = ""
    outcome: str = ""

    def validate(self, prefix: str = "filter") -> None:
        """:class:`InvalidRequest` naming every bad field."""
        bad: list[FieldViolation] = []
        for name in (
            "consumer_organization_id",
            "officer_id",
            "procedure_code",
            "provider_id",
            "certificate_type_id",
        ):
            value: str = getattr(self, name)
            if len(value) > 128 or any(ord(c) < 32 or ord(c) == 127 for c in value):
                bad.append(FieldViolation(f"{prefix}.{name}", "must be at most 128 printable characters"))
        if self.outcome and self.outcome not in OUTCOMES:
            bad.append(FieldViolation(f"{prefix}.outcome", f"must be one of {', '.join(sorted(OUTCOMES))}"))
        bad += range_violations(self.since, self.until, prefix)
        if bad:
            raise InvalidRequest(bad)

    def fingerprint(self) -> str:
        """A short digest binding a page token to the filter it was made for."""
        values = [
            self.since.isoformat() if self.since else "",
            self.until.isoformat() if self.until else "",
            self.consumer_organization_id,
            self.officer_id,
            self.procedure_code,
            self.legal_basis_kind.value if self.legal_basis_kind else "",
            self.provider_id,
            self.certificate_type_id,
            self.outcome,
        ]
        return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]

    def matches_checks(self, outcomes: Sequence[TracedOutcome], certificate_type_ids: Sequence[str]) -> bool:
        """The JSON-column conditions, confirmed on the decoded values."""
        if self.certificate_type_id and self.certificate_type_id not in certificate_type_ids:
            return False
        status = self.outcome if self.outcome in CheckStatus.__members__ else ""
        if not (self.provider_id or status):
            return True
        return any(
            (not self.provider_id or o.provider_id == self.provider_id)
            and (not status or o.status.value == status)
            and (not self.certificate_type_id or o.certificate_type_id == self.certificate_type_id)
            for o in outcomes
        )


def range_violations(
    since: dt.datetime | None, until: dt.datetime | None, prefix: str
) -> list[FieldViolation]:
    if since is not None and until is not None and since >= until:
        return [FieldViolation(f"{prefix}.until", "must be later than since")]
    return []


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """A trace record as oversight sees it: the record, where it sits in the ledger, its row id."""

    record: TraceRecord
    chain_id: str
    seq: int
    row_id: int


@dataclass(frozen=True, slots=True)
class TracePage:
    entries: tuple[TraceEntry, ...]
    next_page_token: str


def encode_page_token(created_at: dt.datetime, row_id: int, filter_: TraceFilter) -> str:
    body = json.dumps([created_at.astimezone(dt.UTC).isoformat(), row_id, filter_.fingerprint()])
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


_MAX_PAGE_TOKEN = 1024


def decode_page_token(token: str, filter_: TraceFilter) -> tuple[dt.datetime, int]:
    """The keyset ``(created_at, id)`` of a token; :class:`InvalidRequest` if it is not one of ours."""
    try:
        if len(token) > _MAX_PAGE_TOKEN:  # ours are about 100 characters; a huge one is not ours
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, row_id, fingerprint = json.loads(raw)
        when = dt.datetime.fromisoformat(created)
        # Row ids are positive 64-bit integers; a boolean is an int to Python but not a row id.
        if type(row_id) is not int or not 0 < row_id < 2**63 or when.tzinfo is None:
            raise ValueError("malformed")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidRequest([FieldViolation("page_token", "is not a page token of this service")]) from None
    if fingerprint != filter_.fingerprint():
        raise InvalidRequest([FieldViolation("page_token", "was made for another filter")])
    return when, row_id
