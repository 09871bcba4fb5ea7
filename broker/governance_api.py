"""The Governance gRPC service: protobuf ⇄ :mod:`broker.governance`, errors through :mod:`onceonly.status`.

Who is calling comes from :func:`broker.auth.current_principal`; the service decides what that
principal may do.
"""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from onceonly.broker.auth import Principal, current_principal
from onceonly.broker.domain import Organisation
from onceonly.broker.governance import GovernanceService, validated_organisation
from onceonly.broker.governance_log import LoggedEvent
from onceonly.errors import unauthenticated
from onceonly.grpc_types import Context
from onceonly.status import abort
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from onceonly.wire import ORGANISATION_KIND

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
        body_json=_json(e.body),
        prev_hash=e.prev_hash,
        hash=e.hash,
        signature=e.signature,
    )


def _json(body: object) -> str:
    import orjson

    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


def _principal() -> Principal:
    principal = current_principal()
    if principal is None:  # the guard authenticates every call first; never trust its absence
        raise unauthenticated("UNAUTHENTICATED", "the call is not authenticated")
    return principal


class GovernanceServicer(governance_pb2_grpc.GovernanceServicer):
    def __init__(self, service: GovernanceService) -> None:
        self._service = service

    async def RegisterOrganisation(
        self, request: governance_pb2.RegisterOrganisationRequest, context: Context
    ) -> governance_pb2.RegisterOrganisationResponse:
        try:
            principal = _principal()
            o = request.organisation
            organisation = validated_organisation(
                o.id, o.name, ORGANISATION_KIND.from_proto(o.kind), o.contact
            )
            done = await self._service.register_organisation(principal, organisation)
            return governance_pb2.RegisterOrganisationResponse(
                organisation=organisation_message(done.organisation), event=event_message(done.event)
            )
        except Exception as exc:
            await abort(context, exc)

    async def ListOrganisations(
        self, request: governance_pb2.ListOrganisationsRequest, context: Context
    ) -> governance_pb2.ListOrganisationsResponse:
        try:
            _principal()
            found = await self._service.organisations()
            return governance_pb2.ListOrganisationsResponse(
                organisations=[organisation_message(o) for o in found]
            )
        except Exception as exc:
            await abort(context, exc)

    async def GetGovernanceLog(
        self, request: governance_pb2.GetGovernanceLogRequest, context: Context
    ) -> governance_pb2.GovernanceLog:
        try:
            _principal()
            size = min(request.page_size or MAX_PAGE, MAX_PAGE)
            events = await self._service.log(after_seq=request.after_seq, limit=size)
            return governance_pb2.GovernanceLog(events=[event_message(e) for e in events])
        except Exception as exc:
            await abort(context, exc)
