"""A client of the Governance service: member organisations and the governance log.

async with GovernanceClient("127.0.0.1:50051", tls=ClientTls.from_dir(pki, "operator")) as gov:
    await gov.register_organisation(Organisation("E00003301", "Labour Inspectorate", "CONSUMER"))
    for org in await gov.organisations(): ...
    async for entry in gov.log(): ...
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from onceonly.consumers.client import BrokerClient, broker_error
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from onceonly.wire import ORGANISATION_KIND

__all__ = ["KINDS", "GovernanceClient", "GovernanceEntry", "Organisation"]

KINDS = ORGANISATION_KIND.names
"""CONSUMER, PROVIDER, OVERSIGHT, OPERATOR."""


@dataclass(frozen=True, slots=True)
class Organisation:
    id: str
    name: str
    kind: str
    """One of :data:`KINDS`."""
    contact: str = ""


@dataclass(frozen=True, slots=True)
class GovernanceEntry:
    seq: int
    at: dt.datetime
    actor_organization_id: str
    actor_role: str
    actor_via: str
    action: str
    subject: str
    body: Mapping[str, Any] = field(default_factory=dict)
    hash: str = ""
    prev_hash: str = ""
    signature: str = ""


def _organisation(o: governance_pb2.Organisation) -> Organisation:
    return Organisation(o.id, o.name, ORGANISATION_KIND.name(o.kind), o.contact)


def _entry(e: governance_pb2.GovernanceEvent) -> GovernanceEntry:
    return GovernanceEntry(
        seq=e.seq,
        at=e.at.ToDatetime(tzinfo=dt.UTC),
        actor_organization_id=e.actor.organization_id,
        actor_role=e.actor.role,
        actor_via=e.actor.via,
        action=e.action,
        subject=e.subject,
        body=json.loads(e.body_json or "{}"),
        hash=e.hash,
        prev_hash=e.prev_hash,
        signature=e.signature,
    )


class GovernanceClient(BrokerClient):
    """A :class:`BrokerClient` that also calls the Governance service (same channel, same credentials)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._governance = governance_pb2_grpc.GovernanceStub(self._channel)

    async def __aenter__(self) -> GovernanceClient:
        return self

    async def register_organisation(self, organisation: Organisation) -> tuple[Organisation, GovernanceEntry]:
        """Register a member organisation (the platform operator only); the log entry that records it."""
        kind = ORGANISATION_KIND.number(organisation.kind)
        if not kind:
            raise ValueError(f"kind must be {ORGANISATION_KIND.choices()}, got {organisation.kind!r}")
        request = governance_pb2.RegisterOrganisationRequest(
            organisation=governance_pb2.Organisation(
                id=organisation.id, name=organisation.name, kind=kind, contact=organisation.contact
            )
        )
        try:
            reply = await self._governance.RegisterOrganisation(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return _organisation(reply.organisation), _entry(reply.event)

    async def organisations(self) -> list[Organisation]:
        try:
            reply = await self._governance.ListOrganisations(
                governance_pb2.ListOrganisationsRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return [_organisation(o) for o in reply.organisations]

    async def log(self, *, after_seq: int = 0) -> AsyncIterator[GovernanceEntry]:
        """Every governance log entry after ``after_seq``, oldest first (fetched a page at a time)."""
        while True:
            try:
                reply = await self._governance.GetGovernanceLog(
                    governance_pb2.GetGovernanceLogRequest(after_seq=after_seq),
                    timeout=self.timeout,
                    metadata=self._metadata,
                )
            except grpc.aio.AioRpcError as exc:
                raise broker_error(exc) from None
            for event in reply.events:
                yield _entry(event)
            if not reply.events:
                return
            after_seq = reply.events[-1].seq
