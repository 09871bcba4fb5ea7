"""In-memory fakes of the broker core's ports (onceonly.broker.ports), for tests without sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from onceonly.broker.domain import StoredReply, TraceRecord
from onceonly.broker.errors import DuplicateRequest, LedgerUnavailable
from onceonly.broker.providers import (
    ProvidedType,
    ProviderAnswer,
    ProviderClient,
    ProviderDescription,
    ProviderQuery,
    ProviderTimeout,
)
from onceonly.broker.traces import TraceEntry, TraceFilter, TracePage
from onceonly.broker.usage import Grouping, Sample, UsageTable, tally
from onceonly.broker.usage_facts import FactFilter, FactTable, Totals, add_facts, facts_of_record, table_of


class MemoryLedger:
    """A ledger in a list: durable when ``append`` returns, unique per (organisation, request id)."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []
        self.replies: dict[tuple[str, str], StoredReply] = {}
        self.broken = False

    async def append(self, record: TraceRecord, reply: StoredReply | None = None) -> None:
        await asyncio.sleep(0)  # a real ledger hands over to its writer: let others run
        if self.broken:
            raise LedgerUnavailable("the test broke the ledger")
        key = (record.consumer_organization_id, record.request_id)
        if reply is not None and key in self.replies:
            raise DuplicateRequest(record.request_id)
        self.records.append(record)
        if reply is not None:
            self.replies[key] = reply

    async def find_reply(self, organization_id: str, request_id: str) -> StoredReply | None:
        return self.replies.get((organization_id, request_id))

    async def has_replies(self, organization_id: str, prefix: str) -> bool:
        return any(org == organization_id and rid.startswith(prefix) for org, rid in self.replies)

    async def find_replies(self, organization_id: str, request_ids: Sequence[str]) -> dict[str, StoredReply]:
        return {
            r: self.replies[(organization_id, r)] for r in request_ids if (organization_id, r) in self.replies
        }


class MemoryTraceQueries:
    """Oversight's reads over a :class:`MemoryLedger`."""

    def __init__(self, ledger: MemoryLedger, names: Mapping[str, str] | None = None) -> None:
        self._ledger = ledger
        self._names = dict(names or {})

    def _newest_first(self) -> list[tuple[int, TraceRecord]]:
        return sorted(enumerate(self._ledger.records, 1), key=lambda p: (p[1].created_at, p[0]), reverse=True)

    def page(self, filter_: TraceFilter, size: int, after: tuple[dt.datetime, int] | None) -> TracePage:
        found = []
        for row_id, r in self._newest_first():
            if (
                filter_.consumer_organization_id
                and r.consumer_organization_id != filter_.consumer_organization_id
            ):
                continue
            if filter_.matches_checks(r.outcomes, r.certificate_type_ids) and (
                not filter_.provider_id or any(o.provider_id == filter_.provider_id for o in r.outcomes)
            ):
                found.append(TraceEntry(r, "memory", row_id, row_id))
        return TracePage(tuple(found[:size]), "")

    def facts(self, filter_: FactFilter, group_by: Sequence[str], bucket: str) -> FactTable:
        totals: Totals = {}
        facts = (
            (r.created_at, key, counted)
            for r in self._ledger.records
            if (filter_.since is None or r.created_at >= filter_.since)
            and (filter_.until is None or r.created_at < filter_.until)
            for key, counted in facts_of_record(r)
        )
        scanned = add_facts(totals, facts, filter_, group_by, bucket)
        return table_of(totals, 0, scanned)

    def usage(self, filter_: TraceFilter, grouping: Grouping, provider_id: str | None) -> UsageTable:
        samples = (
            Sample(
                r.consumer_organization_id,
                r.procedure_code,
                r.decision.value,
                r.duration_ms,
                tuple((o.provider_id, o.status.value, o.latency_ms) for o in r.outcomes),
            )
            for r in self._ledger.records
        )
        return tally(samples, grouping, provider_id)

    def of_subject(
        self, subject_ref: str, exclude_trace_id: str, since: dt.datetime | None, until: dt.datetime | None
    ) -> list[TraceRecord]:
        return [
            r
            for _, r in self._newest_first()
            if r.subject_ref == subject_ref and r.trace_id != exclude_trace_id
        ]

    def organisation_names(self, ids: Iterable[str]) -> dict[str, str]:
        return {i: self._names[i] for i in ids if i in self._names}

    def disclosures(self, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        return {}

    def agreement_descriptions(self, refs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
        return {}


class TaggedPseudonyms:
    """A visibly fake pseudonymiser: the tests check the document number never reaches a trace."""

    def pseudonym(self, subject_key: str) -> str:
        return f"p{abs(hash(subject_key)) % 10**12:012d}"

    def request_digest(self, unkeyed: str) -> str:
        return f"keyed:{unkeyed[::-1]}"


@dataclass
class FakeProvider(ProviderClient):
    """A provider that answers from a table, counts its calls, and can be told to be slow or lie."""

    provider_id: str
    served: Mapping[str, ProvidedType]
    claims: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    found: bool = True
    stall: bool = False
    calls: list[ProviderQuery] = field(default_factory=list)
    describes: int = 0
    say_i_am: str = ""

    async def describe(self, timeout: float) -> ProviderDescription:
        self.describes += 1
        return ProviderDescription(
            self.say_i_am or self.provider_id, self.provider_id, tuple(self.served.values())
        )

    async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer:
        self.calls.append(query)
        if self.stall:
            raise ProviderTimeout(f"{self.provider_id} did not answer within {timeout:.2f}s")
        return ProviderAnswer(self.found, dict(self.claims.get(query.certificate_type_id, {})))
