"""The ResidentAccess gRPC service: protobuf ⇄ :mod:`broker.resident_access`, errors through
:mod:`onceonly.status`, like the other services."""

from __future__ import annotations

import logging

from onceonly.broker.auth import current_principal
from onceonly.broker.oversight_api import stamp
from onceonly.broker.resident_access import MyAccess, ResidentAccessService
from onceonly.errors import unauthenticated
from onceonly.grpc_types import Context
from onceonly.status import abort
from onceonly.v1 import common_pb2, resident_pb2, resident_pb2_grpc
from onceonly.validation import validate_subject
from onceonly.wire import DECISION, DENIAL_REASON, LEGAL_BASIS_KIND, OFFICER_IDENTIFICATION

log = logging.getLogger(__name__)

SERVICE_NAME = resident_pb2.DESCRIPTOR.services_by_name["ResidentAccess"].full_name
LANGUAGES = ("en", "es")


class ResidentAccessServicer(resident_pb2_grpc.ResidentAccessServicer):
    """gRPC face of :class:`ResidentAccessService`."""

    def __init__(self, service: ResidentAccessService) -> None:
        self._service = service

    async def ListMyAccesses(
        self, request: resident_pb2.ListMyAccessesRequest, context: Context
    ) -> resident_pb2.MyAccesses:
        try:
            principal = current_principal()
            if principal is None:
                raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
            subject = validate_subject("subject", request.subject) if request.HasField("subject") else None
            view = await self._service.view(
                principal,
                person=request.person,
                subject=subject,
                page_size=request.page_size,
                page_token=request.page_token,
                language=request.language if request.language in LANGUAGES else "en",
            )
            log.info(
                "resident access log viewed",
                extra={"event": "resident", "trace_id": view.view_trace_id, "entries": len(view.accesses)},
            )
            reply = resident_pb2.MyAccesses(
                next_page_token=view.next_page_token,
                person=view.person,
                people=[resident_pb2.Person(person=i, label=label) for i, label in view.people],
                retention_days=view.retention_days,
                view_trace_id=view.view_trace_id,
            )
            reply.accesses.extend(access_message(a) for a in view.accesses)
            return reply
        except Exception as exc:  # every failure leaves through the one table
            await abort(context, exc)


def access_message(a: MyAccess) -> resident_pb2.MyAccess:
    r = a.record
    basis = common_pb2.LegalBasis(
        kind=LEGAL_BASIS_KIND.to_proto(r.legal_basis_kind), reference=r.legal_basis_reference
    )
    return resident_pb2.MyAccess(
        trace_id=r.trace_id,
        created_at=stamp(r.created_at),
        organization_id=r.consumer_organization_id,
        organization_name=a.organisation_name,
        unit=r.consumer_unit,
        procedure_code=r.procedure_code,
        purpose_text=r.purpose_text,
        legal_basis=basis,
        certificates=[
            resident_pb2.CertificateTitle(certificate_type_id=c, title=t) for c, t in a.certificates
        ],
        provider_names=list(a.provider_names),
        procedure_name=a.procedure_name,
        officer_identification=(
            OFFICER_IDENTIFICATION.to_proto(r.officer_identification)
            if r.officer_identification is not None
            else common_pb2.OFFICER_IDENTIFICATION_UNSPECIFIED
        ),
        decision=DECISION.to_proto(r.decision),
        denial_reason=(
            DENIAL_REASON.to_proto(r.denial_reason)
            if r.denial_reason is not None
            else common_pb2.DENIAL_REASON_UNSPECIFIED
        ),
    )
