"""Every denial reason end to end over gRPC: explained, traced, and no provider contacted."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc
import pytest

from onceonly.broker.agreements import PolicyStore
from onceonly.broker.app import BrokerApp
from onceonly.broker.domain import Agreement, LegalBasisKind, Veto
from onceonly.providers.reference import reference_adapter
from onceonly.v1 import broker_pb2, common_pb2
from tests.conftest import (
    HOUSING_CHECKS,
    INCOME,
    LAW,
    ORG,
    PROCEDURE,
    PROVIDER_IDS,
    RESIDENCE,
    SOCIAL_SECURITY,
    TAX_COMPLIANCE,
    UNEMPLOYMENT,
    CountingAdapter,
    Platform,
    resident,
    verify_failure,
    verify_request,
)


@dataclass
class Counted:
    app: BrokerApp
    adapters: dict[str, CountingAdapter]

    @property
    def calls(self) -> int:
        return sum(a.calls for a in self.adapters.values())


@pytest.fixture
async def counted(platform: Platform) -> Counted:
    adapters = {pid: CountingAdapter(reference_adapter(pid)) for pid in PROVIDER_IDS}
    await platform.start_reference_providers(**adapters)
    return Counted(await platform.start_broker(), adapters)


def _consent(req: broker_pb2.VerifyRequest) -> None:
    req.legal_basis.kind = common_pb2.LEGAL_BASIS_KIND_CONSENT
    req.legal_basis.reference = "CONSENT-2026-000123"


def _self_query(req: broker_pb2.VerifyRequest) -> None:
    req.consumer.officer_document.CopyFrom(req.subject)


def _request(**kwargs: object) -> broker_pb2.VerifyRequest:
    return verify_request(resident(), **kwargs)  # type: ignore[arg-type]


def _with(mutate: Callable[[broker_pb2.VerifyRequest], None], **kwargs: object) -> broker_pb2.VerifyRequest:
    req = _request(**kwargs)
    mutate(req)
    return req


PAST = "madrid-library-card-2020"
VETOED = "madrid-housing-vetoed-by-registry"


async def _add_special_agreements(app: BrokerApp) -> None:
    store = PolicyStore(app.engine)
    store.add_agreement(
        Agreement(
            id=PAST,
            organization_id=ORG,
            procedure_codes=frozenset({"LIBRARY-CARD"}),
            certificate_type_ids=frozenset({RESIDENCE}),
            legal_bases=frozenset({LegalBasisKind.LAW}),
            legal_references=frozenset({LAW}),
            consent_required=False,
            valid_from=datetime(2020, 1, 1, tzinfo=UTC),
            valid_until=datetime(2021, 1, 1, tzinfo=UTC),
        )
    )
    store.add_agreement(
        Agreement(
            id=VETOED,
            organization_id=ORG,
            procedure_codes=frozenset({"YOUTH-HOUSING"}),
            certificate_type_ids=frozenset({RESIDENCE, TAX_COMPLIANCE}),
            legal_bases=frozenset({LegalBasisKind.LAW}),
            legal_references=frozenset({LAW}),
            consent_required=False,
            valid_from=datetime(2025, 1, 1, tzinfo=UTC),
            valid_until=None,
        )
    )
    store.add_veto(Veto(VETOED, "registry", "Awaiting a data-protection review"))
    await app.policy.refresh()


CASES: dict[str, tuple[Callable[[], broker_pb2.VerifyRequest], str]] = {
    "PROCEDURE_NOT_AUTHORISED": (lambda: _request(procedure_code="PARKING-PERMIT"), "purpose.procedure_code"),
    "CERTIFICATE_TYPE_NOT_COVERED": (
        lambda: _request(checks=(HOUSING_CHECKS[0], (SOCIAL_SECURITY, {}))),
        SOCIAL_SECURITY,
    ),
    # The employment service's agreement allows LAW only.
    "LEGAL_BASIS_NOT_ALLOWED": (
        lambda: _with(
            _consent,
            organization_id="E04990101",
            procedure_code="JOB-SEEKER-SUPPORT",
            checks=((UNEMPLOYMENT, {}),),
        ),
        UNEMPLOYMENT,
    ),
    "LEGAL_REFERENCE_NOT_IN_AGREEMENT": (lambda: _request(law="Ley 99/2099 art. 1"), RESIDENCE),
    "CONSENT_REQUIRED": (
        lambda: _request(procedure_code="SOCIAL-EMERGENCY-AID", checks=HOUSING_CHECKS[:1]),
        RESIDENCE,
    ),
    "AGREEMENT_NOT_IN_FORCE": (
        lambda: _request(procedure_code="LIBRARY-CARD", checks=HOUSING_CHECKS[:1]),
        RESIDENCE,
    ),
    "PROVIDER_VETO": (
        lambda: _request(procedure_code="YOUTH-HOUSING", checks=HOUSING_CHECKS[:2]),
        RESIDENCE,
    ),
    "SELF_QUERY_FORBIDDEN": (lambda: _with(_self_query), "subject"),
    "UNKNOWN_CONSUMER": (lambda: _request(organization_id="X12345678"), "consumer.organization_id"),
}


@pytest.mark.parametrize("reason, case", [(r, c) for r, c in CASES.items()], ids=CASES.keys())
async def test_denial_is_explained_traced_and_contacts_no_provider(
    platform: Platform,
    counted: Counted,
    reason: str,
    case: tuple[Callable[[], broker_pb2.VerifyRequest], str],
) -> None:
    await _add_special_agreements(counted.app)
    make_request, subject = case
    request = make_request()

    failure = await verify_failure(platform.stub(counted.app), request)

    assert failure.code == grpc.StatusCode.PERMISSION_DENIED
    assert failure.info is not None
    assert failure.info.reason == reason
    assert failure.info.domain == "onceonly.v1"
    assert failure.info.metadata["denial_reason"] == str(
        common_pb2.DenialReason.Value(f"DENIAL_REASON_{reason}")
    )
    assert failure.precondition is not None
    first = failure.precondition.violations[0]
    assert (first.type, first.subject) == (reason, subject)
    assert first.description
    assert reason in failure.message

    trace_id = failure.info.metadata["trace_id"]
    (row,) = platform.trace_rows(trace_id=trace_id)
    assert row["decision"] == "DENIED"
    assert row["denial_reason"] == reason
    assert row["request_id"] == request.request_id
    assert row["outcomes"] == "[]"
    assert len(platform.trace_rows()) == 1
    assert counted.calls == 0


async def test_seeded_tax_veto_refuses_tax_checks_of_barcelona(platform: Platform, counted: Counted) -> None:
    request = _request(organization_id="L08019030", checks=HOUSING_CHECKS[:3])

    failure = await verify_failure(platform.stub(counted.app), request)

    assert failure.info is not None and failure.info.reason == "PROVIDER_VETO"
    assert failure.precondition is not None
    refused = {(v.type, v.subject) for v in failure.precondition.violations}
    assert refused == {("PROVIDER_VETO", TAX_COMPLIANCE), ("PROVIDER_VETO", INCOME)}
    assert counted.calls == 0


async def test_a_retried_denial_gets_the_same_trace_id(platform: Platform, counted: Counted) -> None:
    stub = platform.stub(counted.app)
    request = _request(procedure_code="PARKING-PERMIT", request_id="req-denied-retry")

    first = await verify_failure(stub, request)
    second = await verify_failure(stub, request)

    assert first.info is not None and second.info is not None
    assert second.info.metadata["trace_id"] == first.info.metadata["trace_id"]
    assert len(platform.trace_rows()) == 1


async def test_an_allowed_request_does_reach_the_providers(platform: Platform, counted: Counted) -> None:
    # The control case: the counting adapters do see calls when policy allows.
    reply = await platform.stub(counted.app).Verify(_request(procedure_code=PROCEDURE), timeout=10)
    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in reply.outcomes)
    assert counted.calls == len(HOUSING_CHECKS)
