"""The broker core's ports: what the verification and oversight services need from the outside.

Each port is a small protocol with a production implementation beside it (the SQL ledger and
trace queries in :mod:`onceonly.broker.ledger` and :mod:`onceonly.broker.trace_queries`, the
keyed pseudonymiser in :mod:`onceonly.broker.ledger`, the evidence verifier in
:mod:`onceonly.evidence`, the policy in :mod:`onceonly.broker.policy`) and in-memory fakes in
the tests, so that the services run without sockets or a database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from onceonly.broker.domain import (
    Agreement,
    AllowedUse,
    PolicyDecision,
    QuotaBreach,
    StoredReply,
    TraceRecord,
    VerificationRequest,
)
from onceonly.broker.traces import TraceFilter, TracePage
from onceonly.broker.usage import Grouping, UsageTable
from onceonly.broker.usage_facts import FactFilter, FactTable
from onceonly.broker.witness import Witnessed

__all__ = [
    "EvidenceCheck",
    "Ledger",
    "PolicyCheck",
    "Pseudonymiser",
    "QuotaCounter",
    "TraceQueries",
    "WitnessReader",
]


class Ledger(Protocol):
    """The durable trace store: a record (and the reply that stands for its request id) is durable
    when :meth:`append` returns; ``DuplicateRequest`` if the request id was recorded before."""

    async def append(self, record: TraceRecord, reply: StoredReply | None = None) -> None: ...

    async def find_reply(self, organization_id: str, request_id: str) -> StoredReply | None: ...

    async def find_replies(self, organization_id: str, request_ids: Sequence[str]) -> dict[str, StoredReply]:
        """The replies stored for these requests (those recorded), by request id."""
        ...

    async def has_replies(self, organization_id: str, prefix: str) -> bool:
        """Whether a reply is stored for a request id starting with ``prefix``."""
        ...


class TraceQueries(Protocol):
    """Reads over the recorded traces, for oversight. Blocking: callers run them in a thread."""

    def page(self, filter_: TraceFilter, size: int, after: tuple[dt.datetime, int] | None) -> TracePage:
        """Up to ``size`` traces matching ``filter_``, newest first, after the keyset ``after``."""
        ...

    def usage(self, filter_: TraceFilter, grouping: Grouping, provider_id: str | None) -> UsageTable:
        """Usage statistics over the traces matching ``filter_``."""
        ...

    def of_subject(
        self, subject_ref: str, exclude_trace_id: str, since: dt.datetime | None, until: dt.datetime | None
    ) -> list[TraceRecord]:
        """Every trace about the subject with pseudonym ``subject_ref``, newest first."""
        ...

    def facts(self, filter_: FactFilter, group_by: Sequence[str], bucket: str) -> FactTable:
        """Usage facts summed by ``bucket`` and ``group_by`` (see ``onceonly.broker.usage_facts``)."""
        ...

    def organisation_names(self, ids: Iterable[str]) -> dict[str, str]:
        """Registered names of the organisations ``ids`` (those without one are left out)."""
        ...

    def disclosures(self, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """(agreement, version) → how its accesses are hidden from residents now, where they are:
        "DEFERRED until YYYY-MM-DD" (before that day, unless released early) or
        "WITHHELD under <law>"."""
        ...

    def agreement_descriptions(self, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """(agreement, version) → its description: what the requests it allows are for, in words."""
        ...


class WitnessReader(Protocol):
    """The signed chain heads kept outside the database (see ``onceonly.broker.witness``)."""

    def heads(self) -> list[Witnessed]: ...


class Pseudonymiser(Protocol):
    """Keyed pseudonyms of subjects and keyed request digests: the key is kept apart from the
    database, so nothing stored can be tested against a guessed document number."""

    def pseudonym(self, subject_key: str) -> str: ...

    def request_digest(self, unkeyed: str) -> str: ...


class EvidenceCheck(Protocol):
    """Checks a provider's signed evidence (see ``onceonly.evidence.EvidenceVerifier``)."""

    def register(self, provider_id: str, certificate_b64: str) -> None: ...

    def verify(self, token: str, provider_id: str, expected: Mapping[str, Any]) -> None: ...


class PolicyCheck(Protocol):
    """Decides a request against the agreements in force (see ``onceonly.broker.policy.Policy``)."""

    def evaluate(self, request: VerificationRequest, now: dt.datetime) -> PolicyDecision: ...

    def allowed_uses(self, organization_id: str, now: dt.datetime) -> dict[str, list[AllowedUse]]: ...

    def agreement(self, agreement_id: str) -> Agreement | None: ...

    def legal_references(
        self, organization_id: str, procedure_code: str, certificate_type_id: str
    ) -> list[str]: ...


class QuotaCounter(Protocol):
    """Counts a consumer's requests against a master agreement's caps (see
    ``onceonly.broker.quotas.SqlQuotas``)."""

    async def take(
        self, master_agreement_id: str, organization_id: str, per_minute: int, per_day: int, now: dt.datetime
    ) -> QuotaBreach | None: ...
