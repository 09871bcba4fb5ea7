"""Provider.Describe and Provider.Attest called directly, as the broker, with hostile requests.

A provider adapter sits in front of an agency's own systems: whatever the broker (or someone
holding its certificate) sends, the SDK answers with a deliberate status, never INTERNAL
(which is what an adapter bug looks like), and keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.providers import synthetic
from onceonly.v1 import common_pb2, provider_pb2
from tests.conftest import PROVIDER_IDS

from .conftest import HostilePlatform, assert_deliberate, call, examples, record
from .strategies import enum_numbers, messages, short_texts, texts

pytestmark = pytest.mark.hostile

S = grpc.StatusCode
ALLOWED = frozenset({S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND, S.RESOURCE_EXHAUSTED})
SERVED = {
    "registry": ("registry.residence/v1", "registry.household/v1"),
    "tax": ("tax.compliance/v1", "tax.income-below-threshold/v1"),
    "employment": ("employment.unemployment-status/v1", "employment.social-security-compliance/v1"),
}
PARAMETERS = {"municipality_code": "28079", "threshold_eur": "18000"}
RESIDENTS = (
    synthetic.find(lambda r: r.document_type == "DNI"),
    synthetic.find(lambda r: r.document_type == "NIE"),
)


BREAKABLE = (
    "request_id",
    "trace_id",
    "certificate_type_id",
    "document_type",
    "document_number",
    "parameters",
    "consumer_organization_id",
    "procedure_code",
    "legal_basis_kind",
)


@st.composite
def attest_requests(draw: Callable[[st.SearchStrategy[Any]], Any]) -> tuple[str, provider_pb2.AttestRequest]:
    """A provider and a request for it: random, or a valid one with one to three parts broken."""
    pid = draw(st.sampled_from(PROVIDER_IDS))
    if draw(st.integers(0, 3)) == 0:
        return pid, draw(messages(provider_pb2.AttestRequest.DESCRIPTOR))
    r = draw(st.sampled_from(RESIDENTS))
    cid = draw(st.sampled_from(SERVED[pid]))
    request = provider_pb2.AttestRequest(
        request_id="req-1",
        trace_id="trace-1",
        certificate_type_id=cid,
        subject=common_pb2.Subject(
            document_type=common_pb2.DocumentType.Value(f"DOCUMENT_TYPE_{r.document_type}"),
            document_number=r.document_number,
        ),
        parameters={k: v for k, v in PARAMETERS.items() if k in _declared(cid)},
        consumer_organization_id="L01280796",
        procedure_code="HOUSING-RENT-SUBSIDY",
        legal_basis_kind=common_pb2.LEGAL_BASIS_KIND_LAW,
    )
    for part in draw(st.sets(st.sampled_from(BREAKABLE), min_size=1, max_size=3)):
        if part == "document_type":
            request.subject.document_type = draw(
                enum_numbers(common_pb2.Subject.DESCRIPTOR.fields_by_name[part])
            )
        elif part == "document_number":
            request.subject.document_number = draw(texts())
        elif part == "certificate_type_id":
            request.certificate_type_id = draw(st.one_of(st.sampled_from(sum(SERVED.values(), ())), texts()))
        elif part == "parameters":
            request.parameters.update(
                draw(
                    st.one_of(
                        st.dictionaries(
                            st.one_of(st.sampled_from(list(PARAMETERS)), texts()), texts(), max_size=4
                        ),
                        st.builds(
                            lambda v, n: {f"p{i}": v for i in range(n)}, short_texts(), st.integers(5, 2_000)
                        ),
                    )
                )
            )
        elif part == "legal_basis_kind":
            request.legal_basis_kind = draw(
                enum_numbers(provider_pb2.AttestRequest.DESCRIPTOR.fields_by_name[part])
            )
        else:
            setattr(request, part, draw(texts()))
    return pid, request


def _declared(cid: str) -> set[str]:
    return {
        "registry.residence/v1": {"municipality_code"},
        "tax.income-below-threshold/v1": {"threshold_eur"},
    }.get(cid, set())


@settings(max_examples=examples(400))
@given(case=attest_requests())
def test_attest(hostile: HostilePlatform, case: tuple[str, provider_pb2.AttestRequest]) -> None:
    pid, request = case
    outcome, reply = hostile.run(call(lambda: hostile.provider_stubs[pid].Attest(request, timeout=30)))
    assert_deliberate(outcome, ALLOWED, f"Provider.Attest on {pid}")
    record(f"Attest {outcome[0].name}")
    if reply is not None:
        assert reply.result in (
            provider_pb2.AttestResponse.RESULT_FOUND,
            provider_pb2.AttestResponse.RESULT_SUBJECT_NOT_FOUND,
        )
        assert reply.evidence
    hostile.tick()


@settings(max_examples=examples(20))
@given(pid=st.sampled_from(PROVIDER_IDS), request=messages(provider_pb2.DescribeRequest.DESCRIPTOR))
def test_describe(hostile: HostilePlatform, pid: str, request: provider_pb2.DescribeRequest) -> None:
    outcome, reply = hostile.run(call(lambda: hostile.provider_stubs[pid].Describe(request, timeout=30)))
    assert_deliberate(outcome, frozenset({S.OK}), f"Provider.Describe on {pid}")
    assert reply.provider_id == pid
