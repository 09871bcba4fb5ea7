"""The Governance gRPC service: protobuf ⇄ :mod:`broker.governance`, errors through :mod:`onceonly.status`.

Who is calling comes from :func:`broker.auth.current_principal`; the service decides what that
principal may do.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from onceonly.broker.agreement_lifecycle import AgreementVersion
from onceonly.broker.auth import Principal, current_principal
from onceonly.broker.domain import Agreement, MasterAgreement, Organisation
from onceonly.broker.governance import GovernanceService, validated_organisation
from onceonly.broker.governance_log import LoggedEvent, body_text
from onceonly.broker.master_agreements import RecordedMaster
from onceonly.errors import FieldViolation, InvalidArgument, unauthenticated
from onceonly.grpc_types import Context
from onceonly.status import answers
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from onceonly.validation import FieldErrors
from onceonly.vocabulary import AgreementAction, Disclosure, OrganisationKind
from onceonly.wire import AGREEMENT_ACTION, AGREEMENT_STATE, DISCLOSURE, LEGAL_BASIS_KIND, ORGANISATION_KIND

SERVICE_NAME = governance_pb2.DESCRIPTOR.services_by_name["Governance"].full_name
MAX_PAGE = 500


def organisation_message(o: Organisation) -> governance_pb2.Organisation:
    return governance_pb2.Organisation(
        id=o.id, name=o.name, kind=ORGANISATION_KIND.to_proto(o.kind), contact=o.contact
    )


def event_message(e: LoggedEvent) -> governance_pb2.GovernanceEvent:
    at = timestamp_pb2.Timestamp()
    at.FromDatetime(e.at)
    return governance_pb2.GovernanceEvent(
        seq=e.seq,
        at=at,
        actor=governance_pb2.GovernanceActor(
            organization_id=e.actor.organization_id, role=e.actor.role, via=e.actor.via
        ),
        action=e.action,
        subject=e.subject,
        body_json=body_text(e.body),
        prev_hash=e.prev_hash,
        hash=e.hash,
        signature=e.signature,
    )


def _stamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _time(msg: governance_pb2.AgreementTerms, name: str, errors: FieldErrors) -> dt.datetime | None:
    if not msg.HasField(name):
        return None
    try:
        return getattr(msg, name).ToDatetime(tzinfo=dt.UTC)  # type: ignore[no-any-return]
    except (ValueError, OverflowError):
        errors.add(f"terms.{name}", "is not a valid timestamp (years 0001 to 9999)")
        return None


def terms_from_message(agreement_id: str, msg: governance_pb2.AgreementTerms) -> tuple[Agreement, str, str]:
    """The terms of a proposal, or ``InvalidArgument`` for what cannot even be read (the rest is
    checked by :func:`broker.agreement_lifecycle.validate_terms`)."""
    errors = FieldErrors()
    bases = set()
    for i, kind in enumerate(msg.legal_bases):
        found = LEGAL_BASIS_KIND.from_proto(kind)
        if found is None:
            errors.add(f"terms.legal_bases[{i}]", f"must be {LEGAL_BASIS_KIND.choices()}")
        else:
            bases.add(found)
    valid_from = _time(msg, "valid_from", errors)
    if valid_from is None and not any(v.field == "terms.valid_from" for v in errors.violations):
        errors.add("terms.valid_from", "is required")
    valid_until = _time(msg, "valid_until", errors)
    disclosure = DISCLOSURE.from_proto(msg.disclosure) if msg.disclosure else Disclosure.IMMEDIATE
    if disclosure is None:
        errors.add("terms.disclosure", f"must be {DISCLOSURE.choices()}")
    disclosure_until = None
    if msg.disclosure_until.strip():
        try:
            disclosure_until = dt.date.fromisoformat(msg.disclosure_until.strip())
        except ValueError:
            errors.add("terms.disclosure_until", "must be a date YYYY-MM-DD")
    errors.raise_if_any()
    assert valid_from is not None
    terms = Agreement(
        id=agreement_id.strip(),
        organization_id=msg.organization_id.strip(),
        procedure_codes=frozenset(c.strip() for c in msg.procedure_codes),
        certificate_type_ids=frozenset(c.strip() for c in msg.certificate_type_ids),
        legal_bases=frozenset(bases),
        legal_references=frozenset(law.strip() for law in msg.laws),
        consent_required=msg.consent_required,
        valid_from=valid_from,
        valid_until=valid_until,
        description=msg.description.strip(),
        officer_token_required=msg.officer_token_required,
        officer_document_required=msg.officer_document_required,
        disclosure=disclosure or Disclosure.IMMEDIATE,
        disclosure_until=disclosure_until,
        disclosure_law=msg.disclosure_law.strip(),
        master_agreement_id=msg.master_agreement_id.strip(),
        data_protection_officer=msg.data_protection_officer.strip(),
    )
    return terms, msg.unit.strip(), msg.accountable.strip()


def terms_message(v: AgreementVersion) -> governance_pb2.AgreementTerms:
    t = v.terms
    msg = governance_pb2.AgreementTerms(
        organization_id=t.organization_id,
        unit=v.unit,
        accountable=v.accountable,
        procedure_codes=sorted(t.procedure_codes),
        certificate_type_ids=sorted(t.certificate_type_ids),
        legal_bases=[LEGAL_BASIS_KIND.to_proto(k) for k in sorted(t.legal_bases)],
        laws=sorted(t.legal_references),
        consent_required=t.consent_required,
        officer_token_required=t.officer_token_required,
        officer_document_required=t.officer_document_required,
        valid_from=_stamp(t.valid_from),
        description=t.description,
        disclosure=DISCLOSURE.to_proto(t.disclosure),
        disclosure_until=t.disclosure_until.isoformat() if t.disclosure_until else "",
        disclosure_law=t.disclosure_law,
        master_agreement_id=t.master_agreement_id,
        data_protection_officer=t.data_protection_officer,
    )
    if t.valid_until is not None:
        msg.valid_until.CopyFrom(_stamp(t.valid_until))
    return msg


def version_message(
    v: AgreementVersion, now: dt.datetime, informed: list[str]
) -> governance_pb2.AgreementVersion:
    msg = governance_pb2.AgreementVersion(
        agreement_id=v.terms.id,
        version=v.terms.version,
        state=AGREEMENT_STATE.to_proto(v.state(now)),
        terms=terms_message(v),
        proposed_by=v.proposed_by,
        proposed_at=_stamp(v.proposed_at),
        note=v.note,
        consulted=list(v.providers),
        waiting_for=list(v.waiting_for) if v.stored_state == "PROPOSED" else [],
        decisions=[
            governance_pb2.ProviderDecision(
                provider_id=d.provider_id,
                decision=AGREEMENT_ACTION.to_proto(AgreementAction(d.decision)),
                reason=d.reason,
                at=_stamp(d.at),
            )
            for d in v.decisions
        ],
        vetoes=[governance_pb2.AgreementVeto(provider_id=p, reason=r) for p, r in sorted(v.vetoes.items())],
        suspended=v.suspended,
        informed=informed,
        master_version=v.terms.master_version,
        endorsed_by=v.endorser,
        disclosure_released=v.released,
        quota_per_minute=v.master.quota_per_minute if v.master else 0,
        quota_per_day=v.master.quota_per_day if v.master else 0,
    )
    if v.decided_at is not None:
        msg.decided_at.CopyFrom(_stamp(v.decided_at))
    return msg


def master_message(r: RecordedMaster) -> governance_pb2.MasterAgreement:
    m = r.master
    return governance_pb2.MasterAgreement(
        id=m.id,
        version=m.version,
        title=m.title,
        procedure_codes=sorted(m.procedure_codes),
        purposes=list(m.purposes),
        certificate_type_ids=sorted(m.certificate_type_ids),
        legal_bases=[LEGAL_BASIS_KIND.to_proto(k) for k in sorted(m.legal_bases)],
        laws=sorted(m.laws),
        retention_days=m.retention_days,
        disclosures=[DISCLOSURE.to_proto(d) for d in sorted(m.disclosures)],
        quota_per_minute=m.quota_per_minute,
        quota_per_day=m.quota_per_day,
        endorsed_by=m.endorsed_by,
        registered_by=r.registered_by,
        registered_at=_stamp(r.registered_at),
    )


def master_from_message(msg: governance_pb2.MasterAgreement) -> MasterAgreement:
    """The clauses of a master agreement, or ``InvalidArgument`` for what cannot even be read (the
    rest is checked by :func:`broker.master_agreements.validate_master`)."""
    errors = FieldErrors()
    bases = set()
    for i, kind in enumerate(msg.legal_bases):
        found = LEGAL_BASIS_KIND.from_proto(kind)
        if found is None:
            errors.add(f"master_agreement.legal_bases[{i}]", f"must be {LEGAL_BASIS_KIND.choices()}")
        else:
            bases.add(found)
    disclosures = set()
    for i, number in enumerate(msg.disclosures):
        d = DISCLOSURE.from_proto(number)
        if d is None:
            errors.add(f"master_agreement.disclosures[{i}]", f"must be {DISCLOSURE.choices()}")
        else:
            disclosures.add(d)
    errors.raise_if_any()
    return MasterAgreement(
        id=msg.id.strip(),
        title=msg.title.strip(),
        procedure_codes=frozenset(c.strip() for c in msg.procedure_codes),
        purposes=tuple(p.strip() for p in msg.purposes),
        certificate_type_ids=frozenset(c.strip() for c in msg.certificate_type_ids),
        legal_bases=frozenset(bases),
        laws=frozenset(law.strip() for law in msg.laws),
        disclosures=frozenset(disclosures or {Disclosure.IMMEDIATE}),
        retention_days=msg.retention_days,
        quota_per_minute=msg.quota_per_minute,
        quota_per_day=msg.quota_per_day,
        endorsed_by=msg.endorsed_by.strip(),
    )


def _principal() -> Principal:
    principal = current_principal()
    if principal is None:  # the guard authenticates every call first; never trust its absence
        raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
    return principal


class GovernanceServicer(governance_pb2_grpc.GovernanceServicer):
    def __init__(self, service: GovernanceService) -> None:
        self._service = service

    @answers
    async def RegisterOrganisation(
        self, request: governance_pb2.RegisterOrganisationRequest, context: Context
    ) -> governance_pb2.RegisterOrganisationResponse:
        principal = _principal()
        o = request.organisation
        organisation = validated_organisation(o.id, o.name, ORGANISATION_KIND.from_proto(o.kind), o.contact)
        done = await self._service.register_organisation(principal, organisation)
        return governance_pb2.RegisterOrganisationResponse(
            organisation=organisation_message(done.organisation), event=event_message(done.event)
        )

    @answers
    async def ListOrganisations(
        self, request: governance_pb2.ListOrganisationsRequest, context: Context
    ) -> governance_pb2.ListOrganisationsResponse:
        _principal()
        found = await self._service.organisations()
        return governance_pb2.ListOrganisationsResponse(
            organisations=[organisation_message(o) for o in found]
        )

    @answers
    async def GetGovernanceLog(
        self, request: governance_pb2.GetGovernanceLogRequest, context: Context
    ) -> governance_pb2.GovernanceLog:
        _principal()
        size = min(request.page_size or MAX_PAGE, MAX_PAGE)
        # A position beyond any the log can reach reads as its end (not as an integer overflow).
        events = await self._service.log(after_seq=min(request.after_seq, 2**62), limit=size)
        return governance_pb2.GovernanceLog(events=[event_message(e) for e in events])

    async def _informed(self) -> list[str]:
        return [o.id for o in await self._service.organisations() if o.kind is OrganisationKind.OVERSIGHT]

    @answers
    async def ProposeAgreement(
        self, request: governance_pb2.ProposeAgreementRequest, context: Context
    ) -> governance_pb2.AgreementChange:
        principal = _principal()
        terms, unit, accountable = terms_from_message(request.agreement_id, request.terms)
        done = await self._service.propose_agreement(principal, terms, unit, accountable)
        return governance_pb2.AgreementChange(
            agreement=version_message(done.version, self._service.now(), await self._informed()),
            event=event_message(done.event),
        )

    @answers
    async def ActOnAgreement(
        self, request: governance_pb2.ActOnAgreementRequest, context: Context
    ) -> governance_pb2.AgreementChange:
        principal = _principal()
        action = AGREEMENT_ACTION.from_proto(request.action)
        if action is None:
            raise InvalidArgument([FieldViolation("action", f"must be {AGREEMENT_ACTION.choices()}")])
        done = await self._service.act_on_agreement(
            principal, request.agreement_id.strip(), request.version or None, action, request.reason
        )
        return governance_pb2.AgreementChange(
            agreement=version_message(done.version, self._service.now(), await self._informed()),
            event=event_message(done.event),
        )

    @answers
    async def ListAgreements(
        self, request: governance_pb2.ListAgreementsRequest, context: Context
    ) -> governance_pb2.ListAgreementsResponse:
        _principal()
        found = await self._service.agreements(request.agreement_id.strip() or None)
        now, informed = self._service.now(), await self._informed()
        return governance_pb2.ListAgreementsResponse(
            agreements=[version_message(v, now, informed) for v in found]
        )

    @answers
    async def RegisterMasterAgreement(
        self, request: governance_pb2.RegisterMasterAgreementRequest, context: Context
    ) -> governance_pb2.MasterAgreementChange:
        principal = _principal()
        done = await self._service.register_master(principal, master_from_message(request.master_agreement))
        reply = governance_pb2.MasterAgreementChange(master_agreement=master_message(done.master))
        if done.event is not None:
            reply.event.CopyFrom(event_message(done.event))
        return reply

    @answers
    async def ListMasterAgreements(
        self, request: governance_pb2.ListMasterAgreementsRequest, context: Context
    ) -> governance_pb2.ListMasterAgreementsResponse:
        _principal()
        found = await self._service.masters(request.master_agreement_id.strip() or None)
        return governance_pb2.ListMasterAgreementsResponse(
            master_agreements=[master_message(r) for r in found]
        )

    @answers
    async def WhoAmI(self, request: governance_pb2.WhoAmIRequest, context: Context) -> governance_pb2.Caller:
        principal = _principal()
        caller = governance_pb2.Caller(
            organization_id=principal.organization_id,
            role=principal.kind,
            via=principal.via,
            officer_id=principal.officer_id or "",
        )
        found = [o for o in await self._service.organisations() if o.id == principal.organization_id]
        if found:
            caller.organisation.CopyFrom(organisation_message(found[0]))
        return caller

    @answers
    async def ImportGovernance(
        self, request: governance_pb2.ImportGovernanceRequest, context: Context
    ) -> governance_pb2.ImportGovernanceResponse:
        principal = _principal()
        name = request.file_name.strip() or "governance file"
        done = await self._service.import_file(principal, request.file_text, name, dry_run=request.dry_run)
        return governance_pb2.ImportGovernanceResponse(
            changes=[
                governance_pb2.ImportChange(what=c.what, action=c.action, subject=c.subject, detail=c.detail)
                for c in done.changes
            ],
            events=[event_message(e) for e in done.events],
        )

    @answers
    async def GetJoiningStatus(
        self, request: governance_pb2.GetJoiningStatusRequest, context: Context
    ) -> governance_pb2.JoiningStatus:
        principal = _principal()
        status = await self._service.joining_status(principal, request.organization_id.strip())
        return governance_pb2.JoiningStatus(
            organisation=organisation_message(status.organisation),
            items=[
                governance_pb2.ChecklistItem(name=i.name, done=i.done, detail=i.detail) for i in status.items
            ],
            complete=status.complete,
        )
