"""The Governance service under hostile input: random and half-valid requests from every role —
registrations, proposals, transitions, imports, checklists — each end with a deliberate status
(never INTERNAL or UNKNOWN), and the broker keeps serving."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.v1 import common_pb2, governance_pb2, governance_pb2_grpc

from .conftest import HostilePlatform, assert_deliberate, call, examples, record
from .strategies import messages, texts

pytestmark = pytest.mark.hostile

S = grpc.StatusCode
ALLOWED = frozenset(
    {
        S.OK,
        S.INVALID_ARGUMENT,
        S.NOT_FOUND,
        S.ALREADY_EXISTS,
        S.PERMISSION_DENIED,
        S.FAILED_PRECONDITION,
        S.RESOURCE_EXHAUSTED,
        S.UNAVAILABLE,
    }
)
CALLERS = st.sampled_from(["operator", "consumer-admin", "provider-admin", "oversight", "consumer"])
AGREEMENTS = st.one_of(st.sampled_from(["madrid-housing-rent-subsidy", "hostile-agreement", ""]), texts())


def _check(hostile: HostilePlatform, rpc: str, caller: str, request: Any) -> None:
    stub = governance_pb2_grpc.GovernanceStub(hostile.governance_callers[caller])
    method = getattr(stub, rpc)
    outcome, _ = hostile.run(call(lambda: method(request, timeout=30)))
    assert_deliberate(outcome, ALLOWED, f"Governance.{rpc} as {caller}")
    record(f"{rpc} as {caller}: {outcome[0].name}")
    hostile.tick()


terms = st.one_of(
    messages(governance_pb2.AgreementTerms.DESCRIPTOR),
    st.builds(
        governance_pb2.AgreementTerms,
        organization_id=st.sampled_from(["L01280796", "AEPD", "tax", "nobody", ""]),
        unit=texts(),
        accountable=texts(),
        procedure_codes=st.lists(
            st.one_of(st.just("HOSTILE-PROC"), st.just("PARKING-PERMIT"), texts()), max_size=3
        ),
        master_agreement_id=st.sampled_from(["municipal-benefits", "employment-services", "nope", ""]),
        data_protection_officer=texts(),
        certificate_type_ids=st.lists(
            st.sampled_from(["registry.residence/v1", "tax.compliance/v1", "x/v9"]), max_size=3
        ),
        legal_bases=st.lists(st.sampled_from([0, 1, 2, 3, 99]), max_size=3),
        laws=st.lists(texts(), max_size=2),
        disclosure=st.sampled_from([0, 1, 2, 3, 42]),
        disclosure_until=st.one_of(st.just("2027-06-30"), texts()),
        disclosure_law=texts(),
    ),
)


@settings(max_examples=examples(120))
@given(agreement_id=AGREEMENTS, terms=terms, caller=CALLERS)
def test_propose(
    hostile: HostilePlatform, agreement_id: str, terms: governance_pb2.AgreementTerms, caller: str
) -> None:
    _check(
        hostile,
        "ProposeAgreement",
        caller,
        governance_pb2.ProposeAgreementRequest(agreement_id=agreement_id, terms=terms),
    )


@settings(max_examples=examples(120))
@given(
    request=st.one_of(
        messages(governance_pb2.ActOnAgreementRequest.DESCRIPTOR),
        st.builds(
            governance_pb2.ActOnAgreementRequest,
            agreement_id=AGREEMENTS,
            version=st.integers(0, 2**32 - 1),
            action=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 77]),
            reason=texts(),
        ),
    ),
    caller=CALLERS,
)
def test_act(hostile: HostilePlatform, request: governance_pb2.ActOnAgreementRequest, caller: str) -> None:
    _check(hostile, "ActOnAgreement", caller, request)


toml_like = st.one_of(
    texts(),
    st.sampled_from(
        [
            "organisations = 5",
            "[[agreements]]\nid = 3",
            '[[agreements]]\nid = "a"\norganization = "L01280796"\nprocedure = "P"\ncertificate_types = "x"',
            "[[vetoes]]\nagreement = []",
            '[[master_agreements]]\nid = "m"\ntitle = "T"\ncertificate_types = ["x/v9"]\n'
            'legal_bases = ["LAW"]',
            '[[master_agreements]]\nid = "m"\nquota_per_day = -1',
            '[[agreements]]\nid = "a"\nmaster = "nope"\norganization = "L01280796"\nprocedures = []',
            '[[organisations]]\nid = "Z"\nname = "Z"\nkind = 7',
            "[x]\ny = 1",
            "\x00",
        ]
    ),
)


@settings(max_examples=examples(120))
@given(text=toml_like, dry_run=st.booleans(), caller=CALLERS)
def test_import(hostile: HostilePlatform, text: str, dry_run: bool, caller: str) -> None:
    request = governance_pb2.ImportGovernanceRequest(
        file_text=text, file_name="hostile.toml", dry_run=dry_run
    )
    _check(hostile, "ImportGovernance", caller, request)


@settings(max_examples=examples(80))
@given(
    request=st.one_of(
        messages(governance_pb2.RegisterOrganisationRequest.DESCRIPTOR),
        messages(governance_pb2.GetJoiningStatusRequest.DESCRIPTOR),
        messages(governance_pb2.ListAgreementsRequest.DESCRIPTOR),
        messages(governance_pb2.GetGovernanceLogRequest.DESCRIPTOR),
        messages(governance_pb2.ListMasterAgreementsRequest.DESCRIPTOR),
    ),
    caller=CALLERS,
)
def test_the_other_calls(hostile: HostilePlatform, request: Any, caller: str) -> None:
    rpc = {
        "RegisterOrganisationRequest": "RegisterOrganisation",
        "GetJoiningStatusRequest": "GetJoiningStatus",
        "ListAgreementsRequest": "ListAgreements",
        "GetGovernanceLogRequest": "GetGovernanceLog",
        "ListMasterAgreementsRequest": "ListMasterAgreements",
    }[type(request).__name__]
    _check(hostile, rpc, caller, request)


masters = st.one_of(
    messages(governance_pb2.MasterAgreement.DESCRIPTOR),
    st.builds(
        governance_pb2.MasterAgreement,
        id=st.one_of(st.sampled_from(["hostile-master", "municipal-benefits", ""]), texts()),
        title=texts(),
        procedure_codes=st.lists(st.one_of(st.just("HOSTILE-PROC"), texts()), max_size=2),
        certificate_type_ids=st.lists(st.sampled_from(["registry.residence/v1", "x/v9"]), max_size=2),
        legal_bases=st.lists(st.sampled_from([0, 1, 2, 3, 99]), max_size=3),
        laws=st.lists(texts(), max_size=2),
        disclosures=st.lists(st.sampled_from([0, 1, 2, 3, 42]), max_size=3),
        retention_days=st.integers(0, 2**32 - 1),
        quota_per_minute=st.integers(0, 2**32 - 1),
        quota_per_day=st.integers(0, 2**32 - 1),
        endorsed_by=st.sampled_from(["SGAD", "AEPD", "tax", "nobody", ""]),
    ),
)


@settings(max_examples=examples(120))
@given(master=masters, caller=CALLERS)
def test_register_master(
    hostile: HostilePlatform, master: governance_pb2.MasterAgreement, caller: str
) -> None:
    request = governance_pb2.RegisterMasterAgreementRequest(master_agreement=master)
    _check(hostile, "RegisterMasterAgreement", caller, request)


_ = common_pb2  # the legal-basis numbers above are common.proto's
