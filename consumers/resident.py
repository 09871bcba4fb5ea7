"""The ResidentAccess client: a resident's own access log (or that of a person they represent).

    tls = ClientTls(Path("var/pki/ca.pem"))                # the CA only: the token says who
    async with ResidentClient("127.0.0.1:50052", token=eid_token, tls=tls) as me:
        log = await me.access_log()                 # my own
        child = await me.access_log(person=1)       # the first person my token says I represent

The token comes from an eID provider the broker trusts for residents (``residents = true`` in its
issuers file); the broker reads the resident's document from it, never from the request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import grpc

from onceonly.consumers.client import BrokerClient, Subject, _subject, broker_error
from onceonly.v1 import resident_pb2, resident_pb2_grpc
from onceonly.wire import DECISION, DENIAL_REASON, LEGAL_BASIS_KIND, OFFICER_IDENTIFICATION

__all__ = ["AccessLog", "LoggedAccess", "ResidentClient"]


@dataclass(frozen=True, slots=True)
class LoggedAccess:
    """One access to a resident's data, as the resident sees it."""

    trace_id: str
    created_at: dt.datetime
    organization_id: str
    organization_name: str
    unit: str
    procedure_code: str
    purpose_text: str
    legal_basis_kind: str
    legal_basis_reference: str
    certificates: tuple[tuple[str, str], ...]
    """(certificate type, title)."""
    provider_names: tuple[str, ...]
    officer_identification: str
    """TOKEN (the officer was authenticated), CERTIFICATE (named by an application), or empty."""
    decision: str
    denial_reason: str
    procedure_name: str = ""
    """What the procedure is for, in words (the allowing agreement's description), if known."""


@dataclass(frozen=True, slots=True)
class AccessLog:
    accesses: tuple[LoggedAccess, ...]
    next_page_token: str
    person: int
    people: tuple[tuple[int, str], ...]
    """(place, label): 0 is the resident; then the people they represent."""
    retention_days: int
    view_trace_id: str


def _access(m: resident_pb2.MyAccess) -> LoggedAccess:
    return LoggedAccess(
        trace_id=m.trace_id,
        created_at=m.created_at.ToDatetime(tzinfo=dt.UTC),
        organization_id=m.organization_id,
        organization_name=m.organization_name,
        unit=m.unit,
        procedure_code=m.procedure_code,
        purpose_text=m.purpose_text,
        legal_basis_kind=LEGAL_BASIS_KIND.name(m.legal_basis.kind),
        legal_basis_reference=m.legal_basis.reference,
        certificates=tuple((c.certificate_type_id, c.title) for c in m.certificates),
        provider_names=tuple(m.provider_names),
        officer_identification=OFFICER_IDENTIFICATION.name(m.officer_identification),
        decision=DECISION.name(m.decision),
        denial_reason=DENIAL_REASON.name(m.denial_reason),
        procedure_name=m.procedure_name,
    )


class ResidentClient(BrokerClient):
    """A :class:`BrokerClient` that also calls the ResidentAccess service."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._residents = resident_pb2_grpc.ResidentAccessStub(self._channel)

    async def access_log(
        self,
        *,
        person: int = 0,
        subject: Subject | None = None,
        page_size: int = 0,
        page_token: str = "",
        language: str = "en",
    ) -> AccessLog:
        """One page of the access log of the signed-in resident (``person`` 0) or of someone they
        represent (``person`` ≥ 1, or their ``subject``). The view is itself traced."""
        request = resident_pb2.ListMyAccessesRequest(
            person=person, page_size=page_size, page_token=page_token, language=language
        )
        if subject is not None:
            request.subject.CopyFrom(_subject(subject))
        try:
            m = await self._residents.ListMyAccesses(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return AccessLog(
            tuple(_access(a) for a in m.accesses),
            m.next_page_token,
            m.person,
            tuple((p.person, p.label) for p in m.people),
            m.retention_days,
            m.view_trace_id,
        )
