"""A client of the Governance service: member organisations and the governance log.

async with GovernanceClient("127.0.0.1:50051", tls=ClientTls.from_dir(pki, "operator")) as gov:
    await gov.register_organisation(Organisation("E00003301", "Labour Inspectorate", "CONSUMER"))
    for org in await gov.organisations(): ...
    async for entry in gov.log(): ...
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import timestamp_pb2

from onceonly.consumers.client import BrokerClient, broker_error
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from onceonly.wire import AGREEMENT_ACTION, AGREEMENT_STATE, DISCLOSURE, LEGAL_BASIS_KIND, ORGANISATION_KIND

__all__ = [
    "ACTIONS",
    "KINDS",
    "AgreementTerms",
    "AgreementView",
    "GovernanceClient",
    "GovernanceEntry",
    "ImportChange",
    "MasterAgreement",
    "Organisation",
]

ACTIONS = AGREEMENT_ACTION.names
"""APPROVE, VETO, LIFT_VETO, SUSPEND, RESUME, REVOKE, ENDORSE, RELEASE_DISCLOSURE."""

R = TypeVar("R")

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


@dataclass(frozen=True, slots=True)
class ImportChange:
    what: str
    """organisation, master agreement, agreement or veto."""
    action: str
    """ADD, CHANGE, REVOKE or LIFT."""
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class AgreementTerms:
    """What a proposed agreement allows (see ``AgreementTerms`` in governance.proto)."""

    organization_id: str
    unit: str
    accountable: str
    procedure_codes: tuple[str, ...]
    certificate_type_ids: tuple[str, ...]
    legal_bases: tuple[str, ...]
    """LAW, CONSENT, NO_OBJECTION."""
    laws: tuple[str, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime | None = None
    consent_required: bool = False
    officer_token_required: bool = False
    officer_document_required: bool = False
    description: str = ""
    disclosure: str = "IMMEDIATE"
    """IMMEDIATE, DEFERRED (until ``disclosure_until``) or WITHHELD (under ``disclosure_law``)."""
    disclosure_until: dt.date | None = None
    disclosure_law: str = ""
    master_agreement_id: str = ""
    """The master agreement whose clauses bind it (required)."""
    data_protection_officer: str = ""
    """Consulted: the consumer's data-protection officer, a named role (required)."""


@dataclass(frozen=True, slots=True)
class MasterAgreement:
    """A master agreement's clauses (see ``MasterAgreement`` in governance.proto)."""

    id: str
    title: str
    certificate_type_ids: tuple[str, ...]
    legal_bases: tuple[str, ...]
    laws: tuple[str, ...] = ()
    procedure_codes: tuple[str, ...] = ()
    """Empty: any procedure."""
    purposes: tuple[str, ...] = ()
    disclosures: tuple[str, ...] = ("IMMEDIATE",)
    retention_days: int = 0
    quota_per_minute: int = 0
    quota_per_day: int = 0
    endorsed_by: str = ""
    version: int = 0
    """Output only, as are the two below."""
    registered_by: str = ""
    registered_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AgreementView:
    """A version of an agreement as the platform records it."""

    agreement_id: str
    version: int
    state: str
    organization_id: str
    unit: str
    accountable: str
    procedure_codes: tuple[str, ...]
    certificate_type_ids: tuple[str, ...]
    legal_bases: tuple[str, ...]
    laws: tuple[str, ...]
    valid_from: dt.datetime
    valid_until: dt.datetime | None
    proposed_by: str
    consulted: tuple[str, ...]
    informed: tuple[str, ...]
    waiting_for: tuple[str, ...]
    decisions: tuple[tuple[str, str, str], ...]
    """(provider, APPROVE or VETO, reason)."""
    vetoes: tuple[tuple[str, str], ...]
    """(provider, reason) of vetoes while in force."""
    suspended: str
    note: str
    disclosure: str = "IMMEDIATE"
    master_agreement_id: str = ""
    master_version: int = 0
    data_protection_officer: str = ""
    endorsed_by: str = ""
    disclosure_released: str = ""
    quota_per_minute: int = 0
    quota_per_day: int = 0


def _stamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _terms_message(t: AgreementTerms) -> governance_pb2.AgreementTerms:
    bases = []
    for name in t.legal_bases:
        number = LEGAL_BASIS_KIND.number(name)
        if not number:
            raise ValueError(f"legal basis must be {LEGAL_BASIS_KIND.choices()}, got {name!r}")
        bases.append(number)
    msg = governance_pb2.AgreementTerms(
        organization_id=t.organization_id,
        unit=t.unit,
        accountable=t.accountable,
        procedure_codes=list(t.procedure_codes),
        certificate_type_ids=list(t.certificate_type_ids),
        legal_bases=bases,
        laws=list(t.laws),
        consent_required=t.consent_required,
        officer_token_required=t.officer_token_required,
        officer_document_required=t.officer_document_required,
        valid_from=_stamp(t.valid_from),
        description=t.description,
        disclosure=DISCLOSURE.number(t.disclosure),
        disclosure_until=t.disclosure_until.isoformat() if t.disclosure_until else "",
        disclosure_law=t.disclosure_law,
        master_agreement_id=t.master_agreement_id,
        data_protection_officer=t.data_protection_officer,
    )
    if t.disclosure.strip() and not msg.disclosure:
        raise ValueError(f"disclosure must be {DISCLOSURE.choices()}, got {t.disclosure!r}")
    if t.valid_until is not None:
        msg.valid_until.CopyFrom(_stamp(t.valid_until))
    return msg


def _view(a: governance_pb2.AgreementVersion) -> AgreementView:
    t = a.terms
    return AgreementView(
        agreement_id=a.agreement_id,
        version=a.version,
        state=AGREEMENT_STATE.name(a.state),
        organization_id=t.organization_id,
        unit=t.unit,
        accountable=t.accountable,
        procedure_codes=tuple(t.procedure_codes),
        certificate_type_ids=tuple(t.certificate_type_ids),
        legal_bases=tuple(LEGAL_BASIS_KIND.name(k) for k in t.legal_bases),
        laws=tuple(t.laws),
        valid_from=t.valid_from.ToDatetime(tzinfo=dt.UTC),
        valid_until=t.valid_until.ToDatetime(tzinfo=dt.UTC) if t.HasField("valid_until") else None,
        proposed_by=a.proposed_by,
        consulted=tuple(a.consulted),
        informed=tuple(a.informed),
        waiting_for=tuple(a.waiting_for),
        decisions=tuple((d.provider_id, AGREEMENT_ACTION.name(d.decision), d.reason) for d in a.decisions),
        vetoes=tuple((v.provider_id, v.reason) for v in a.vetoes),
        suspended=a.suspended,
        note=a.note,
        disclosure=(
            {
                "DEFERRED": f"DEFERRED until {t.disclosure_until}",
                "WITHHELD": f"WITHHELD under {t.disclosure_law}",
            }.get(DISCLOSURE.name(t.disclosure), "IMMEDIATE")
        ),
        master_agreement_id=t.master_agreement_id,
        master_version=a.master_version,
        data_protection_officer=t.data_protection_officer,
        endorsed_by=a.endorsed_by,
        disclosure_released=a.disclosure_released,
        quota_per_minute=a.quota_per_minute,
        quota_per_day=a.quota_per_day,
    )


def _master(m: governance_pb2.MasterAgreement) -> MasterAgreement:
    return MasterAgreement(
        id=m.id,
        title=m.title,
        certificate_type_ids=tuple(m.certificate_type_ids),
        legal_bases=tuple(LEGAL_BASIS_KIND.name(k) for k in m.legal_bases),
        laws=tuple(m.laws),
        procedure_codes=tuple(m.procedure_codes),
        purposes=tuple(m.purposes),
        disclosures=tuple(DISCLOSURE.name(d) for d in m.disclosures),
        retention_days=m.retention_days,
        quota_per_minute=m.quota_per_minute,
        quota_per_day=m.quota_per_day,
        endorsed_by=m.endorsed_by,
        version=m.version,
        registered_by=m.registered_by,
        registered_at=m.registered_at.ToDatetime(tzinfo=dt.UTC) if m.HasField("registered_at") else None,
    )


def _master_message(m: MasterAgreement) -> governance_pb2.MasterAgreement:
    bases = [LEGAL_BASIS_KIND.number(b) for b in m.legal_bases]
    disclosures = [DISCLOSURE.number(d) for d in m.disclosures]
    if not all(bases) or not all(disclosures):
        raise ValueError(
            f"legal bases must be {LEGAL_BASIS_KIND.choices()} and disclosures {DISCLOSURE.choices()}"
        )
    return governance_pb2.MasterAgreement(
        id=m.id,
        title=m.title,
        procedure_codes=list(m.procedure_codes),
        purposes=list(m.purposes),
        certificate_type_ids=list(m.certificate_type_ids),
        legal_bases=bases,
        laws=list(m.laws),
        retention_days=m.retention_days,
        disclosures=disclosures,
        quota_per_minute=m.quota_per_minute,
        quota_per_day=m.quota_per_day,
        endorsed_by=m.endorsed_by,
    )


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

    async def _call(self, rpc: Callable[..., Awaitable[R]], request: object) -> R:
        """One call with this client's deadline and credentials; a failure as a ``BrokerError``."""
        try:
            return await rpc(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None

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
        reply = await self._call(self._governance.RegisterOrganisation, request)
        return _organisation(reply.organisation), _entry(reply.event)

    async def propose_agreement(
        self, agreement_id: str, terms: AgreementTerms
    ) -> tuple[AgreementView, GovernanceEntry]:
        """Propose a new version of an agreement (a consumer's administrators, for their organisation)."""
        request = governance_pb2.ProposeAgreementRequest(
            agreement_id=agreement_id, terms=_terms_message(terms)
        )
        reply = await self._call(self._governance.ProposeAgreement, request)
        return _view(reply.agreement), _entry(reply.event)

    async def act_on_agreement(
        self, agreement_id: str, action: str, *, reason: str = "", version: int = 0
    ) -> tuple[AgreementView, GovernanceEntry]:
        """One of :data:`ACTIONS` on a version (0: the pending one, else the one in force)."""
        number = AGREEMENT_ACTION.number(action)
        if not number:
            raise ValueError(f"action must be {AGREEMENT_ACTION.choices()}, got {action!r}")
        request = governance_pb2.ActOnAgreementRequest(
            agreement_id=agreement_id, version=version, action=number, reason=reason
        )
        reply = await self._call(self._governance.ActOnAgreement, request)
        return _view(reply.agreement), _entry(reply.event)

    async def agreements(self, agreement_id: str = "") -> list[AgreementView]:
        """Every version of every agreement (or of one)."""
        reply = await self._call(
            self._governance.ListAgreements, governance_pb2.ListAgreementsRequest(agreement_id=agreement_id)
        )
        return [_view(a) for a in reply.agreements]

    async def register_master(
        self, master: MasterAgreement
    ) -> tuple[MasterAgreement, GovernanceEntry | None]:
        """Register a master agreement or a new version of it (the operator only); the log entry
        (``None`` when those clauses were recorded already)."""
        request = governance_pb2.RegisterMasterAgreementRequest(master_agreement=_master_message(master))
        reply = await self._call(self._governance.RegisterMasterAgreement, request)
        return _master(reply.master_agreement), _entry(reply.event) if reply.HasField("event") else None

    async def masters(self, master_id: str = "") -> list[MasterAgreement]:
        """Every version of every master agreement (or of one)."""
        reply = await self._call(
            self._governance.ListMasterAgreements,
            governance_pb2.ListMasterAgreementsRequest(master_agreement_id=master_id),
        )
        return [_master(m) for m in reply.master_agreements]

    async def import_file(
        self, text: str, name: str = "", *, dry_run: bool = False
    ) -> tuple[list[ImportChange], list[GovernanceEntry]]:
        """Make what is recorded match a governance file (the operator only): the changes and the
        log entries that record them (none for a dry run)."""
        request = governance_pb2.ImportGovernanceRequest(file_text=text, file_name=name, dry_run=dry_run)
        reply = await self._call(self._governance.ImportGovernance, request)
        changes = [ImportChange(c.what, c.action, c.subject, c.detail) for c in reply.changes]
        return changes, [_entry(e) for e in reply.events]

    async def joining_status(
        self, organization_id: str
    ) -> tuple[Organisation, list[tuple[str, bool, str]], bool]:
        """An organisation's joining checklist: (organisation, [(item, done, detail)], complete)."""
        reply = await self._call(
            self._governance.GetJoiningStatus,
            governance_pb2.GetJoiningStatusRequest(organization_id=organization_id),
        )
        items = [(i.name, i.done, i.detail) for i in reply.items]
        return _organisation(reply.organisation), items, reply.complete

    async def who_am_i(self) -> tuple[str, str, str, str, Organisation | None]:
        """Who the broker takes this client to be: (organisation, role, via, officer, the
        organisation as registered or ``None``)."""
        reply = await self._call(self._governance.WhoAmI, governance_pb2.WhoAmIRequest())
        org = _organisation(reply.organisation) if reply.HasField("organisation") else None
        return reply.organization_id, reply.role, reply.via, reply.officer_id, org

    async def organisations(self) -> list[Organisation]:
        reply = await self._call(
            self._governance.ListOrganisations, governance_pb2.ListOrganisationsRequest()
        )
        return [_organisation(o) for o in reply.organisations]

    async def log(self, *, after_seq: int = 0) -> AsyncIterator[GovernanceEntry]:
        """Every governance log entry after ``after_seq``, oldest first (fetched a page at a time)."""
        while True:
            reply = await self._call(
                self._governance.GetGovernanceLog, governance_pb2.GetGovernanceLogRequest(after_seq=after_seq)
            )
            for event in reply.events:
                yield _entry(event)
            if not reply.events:
                return
            after_seq = reply.events[-1].seq
