"""Oversight.ListTraces, GetUsage and GetResidentReport under hostile input.

Called mostly as the oversight body (whose calls reach the ledger queries), sometimes as a
provider (scoped to its own data) and as a consumer (refused): every call ends with a
deliberate status, and the broker keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.providers import synthetic
from onceonly.v1 import common_pb2, oversight_pb2, oversight_pb2_grpc
from tests.conftest import LAW

from .conftest import HostilePlatform, assert_deliberate, call, examples, record
from .strategies import messages, texts, timestamps

pytestmark = pytest.mark.hostile

S = grpc.StatusCode
ALLOWED = frozenset(
    {S.OK, S.INVALID_ARGUMENT, S.NOT_FOUND, S.PERMISSION_DENIED, S.RESOURCE_EXHAUSTED, S.UNAVAILABLE}
)
CALLERS = ("oversight", "oversight", "oversight", "provider", "consumer")
RESIDENT = synthetic.find(lambda r: r.document_type == "NIE")


def _stub(hostile: HostilePlatform, caller: str) -> oversight_pb2_grpc.OversightAsyncStub:
    channel = {"oversight": hostile.oversight, "provider": hostile.as_provider, "consumer": hostile.consumer}[
        caller
    ]
    return oversight_pb2_grpc.OversightStub(channel)


def _check(hostile: HostilePlatform, rpc: str, caller: str, request: Any) -> None:
    method = getattr(_stub(hostile, caller), rpc)
    outcome, _ = hostile.run(call(lambda: method(request, timeout=30)))
    assert_deliberate(outcome, ALLOWED, f"Oversight.{rpc} as {caller}")
    record(f"{rpc} as {caller}: {outcome[0].name}")
    hostile.tick()


outcomes = st.sampled_from(
    ["GRANTED", "DENIED", "VERIFIED", "SUBJECT_NOT_FOUND", "TIMEOUT", "granted", " ERROR "]
)
filters = st.one_of(
    messages(oversight_pb2.TraceFilter.DESCRIPTOR),
    st.builds(
        oversight_pb2.TraceFilter,
        outcome=st.one_of(outcomes, texts()),
        provider_id=st.sampled_from(["", "registry", "tax", "nobody"]),
        certificate_type_id=st.sampled_from(["", "tax.compliance/v1", "x%"]),
        legal_basis_kind=st.sampled_from([0, 1, 2, 3, -7]),
    ),
)
page_tokens = st.one_of(
    st.just(""),
    texts(),
    st.binary(max_size=64).map(lambda b: __import__("base64").urlsafe_b64encode(b).decode()),
    st.sampled_from(
        [
            "W1tbW1tbW1tbW1tbW1tbW1tbW1tb",  # base64 of "[[[[[..."
            "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgMSwgIngiXQ",  # a token of another filter
            "WzEsMiwzXQ",  # [1,2,3]
            "eyJhIjoxfQ",  # {"a":1}
            "bnVsbA",  # null
        ]
    ),
)
list_requests = st.one_of(
    messages(oversight_pb2.ListTracesRequest.DESCRIPTOR),
    st.builds(
        oversight_pb2.ListTracesRequest,
        filter=filters,
        page_size=st.one_of(st.integers(0, 600), st.integers(0, 2**32 - 1)),
        page_token=page_tokens,
    ),
)


@settings(max_examples=examples(250))
@given(request=list_requests, caller=st.sampled_from(CALLERS))
def test_list_traces(hostile: HostilePlatform, request: oversight_pb2.ListTracesRequest, caller: str) -> None:
    _check(hostile, "ListTraces", caller, request)


@settings(max_examples=examples(150))
@given(request=messages(oversight_pb2.GetUsageRequest.DESCRIPTOR), caller=st.sampled_from(CALLERS))
def test_get_usage(hostile: HostilePlatform, request: oversight_pb2.GetUsageRequest, caller: str) -> None:
    _check(hostile, "GetUsage", caller, request)


@st.composite
def report_requests(draw: Callable[[st.SearchStrategy[Any]], Any]) -> oversight_pb2.GetResidentReportRequest:
    """A valid report request with some fields replaced by random ones, or an entirely random one."""
    if draw(st.booleans()):
        return draw(messages(oversight_pb2.GetResidentReportRequest.DESCRIPTOR))
    request = oversight_pb2.GetResidentReportRequest(
        subject=common_pb2.Subject(
            document_type=common_pb2.DOCUMENT_TYPE_NIE, document_number=RESIDENT.document_number
        ),
        purpose="Complaint 2026/17 about access to residence data",
        legal_basis=common_pb2.LegalBasis(kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference=LAW),
        case_file_id="AEPD-2026-17",
    )
    for name in draw(
        st.sets(st.sampled_from(["purpose", "case_file_id", "subject", "legal_basis", "since", "until"]))
    ):
        if name in ("purpose", "case_file_id"):
            setattr(request, name, draw(texts()))
        elif name == "subject":
            request.subject.CopyFrom(draw(messages(common_pb2.Subject.DESCRIPTOR)))
        elif name == "legal_basis":
            request.legal_basis.CopyFrom(draw(messages(common_pb2.LegalBasis.DESCRIPTOR)))
        else:
            getattr(request, name).CopyFrom(
                __import__("google.protobuf.timestamp_pb2").protobuf.timestamp_pb2.Timestamp(
                    **draw(timestamps())
                )
            )
    return request


@settings(max_examples=examples(200))
@given(request=report_requests(), caller=st.sampled_from(CALLERS))
def test_get_resident_report(
    hostile: HostilePlatform, request: oversight_pb2.GetResidentReportRequest, caller: str
) -> None:

    _check(hostile, "GetResidentReport", caller, request)


def test_page_token_bombs(hostile: HostilePlatform) -> None:
    """Page tokens crafted to blow up a JSON or base64 decoder are refused as bad tokens."""
    import base64

    bombs = [
        "[" * 100_000,
        base64.urlsafe_b64encode(b"[" * 100_000).decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", 1e999, "x"]').decode(),
        base64.urlsafe_b64encode(b'["9999-12-31T23:59:59+00:00", 99999999999999999999999, "x"]').decode(),
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", 1, ["unhashable"]]').decode(),
        base64.urlsafe_b64encode(("x" * 1_000_000).encode()).decode(),
        "\u0000" * 10,
    ]
    for token in bombs:
        _check(hostile, "ListTraces", "oversight", oversight_pb2.ListTracesRequest(page_token=token))
