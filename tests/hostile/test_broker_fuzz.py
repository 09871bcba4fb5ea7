"""Broker.Verify and Broker.VerifyBulk under hostile input: every call ends with a deliberate status.

Two kinds of requests: entirely random messages (drawn field by field from the descriptors),
which mostly stop at validation, and a valid rent-subsidy request with a few fields broken,
which reaches policy, the providers and the ledger. Either way the answer is OK or a status
the broker chose (never UNKNOWN or INTERNAL), no stack trace leaks, and the broker keeps serving.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from onceonly.providers import synthetic
from onceonly.v1 import broker_pb2, common_pb2
from tests.conftest import HOUSING_CHECKS, resident, verify_request

from .conftest import (
    HostilePlatform,
    assert_deliberate,
    assert_status_message,
    call,
    examples,
    record,
    rich_status,
)
from .strategies import REALISTIC, enum_numbers, messages, short_texts, sized, texts

pytestmark = pytest.mark.hostile

S = grpc.StatusCode
VERIFY_ALLOWED = frozenset(
    {
        S.OK,
        S.INVALID_ARGUMENT,
        S.NOT_FOUND,
        S.PERMISSION_DENIED,
        S.ALREADY_EXISTS,
        S.RESOURCE_EXHAUSTED,
        S.UNAVAILABLE,  # only with an ErrorInfo saying why (assert_deliberate)
    }
)
RESIDENTS = (
    resident(lambda r: r.document_type == "DNI"),
    resident(lambda r: r.document_type == "NIE"),
    synthetic.find(lambda r: not r.known_to_tax),
)
CERTIFICATE_TYPES = (
    "registry.residence/v1",
    "registry.household/v1",
    "tax.compliance/v1",
    "tax.income-below-threshold/v1",
    "employment.unemployment-status/v1",
    "employment.social-security-compliance/v1",
)


def leaf_paths(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> list[FieldDescriptor | Any]:
    """``(path, field)`` of every singular scalar under ``descriptor`` (nested messages included)."""
    paths: list[Any] = []
    for field in descriptor.fields:
        if field.is_repeated:
            continue
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth < 3:
                paths.extend(leaf_paths(field.message_type, f"{path}.", depth + 1))
        else:
            paths.append((path, field))
    return paths


def message_paths(descriptor: Descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    paths: list[str] = []
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            paths.append(f"{prefix}{field.name}")
            if depth < 3:
                paths.extend(message_paths(field.message_type, f"{prefix}{field.name}.", depth + 1))
    return paths


def _walk(msg: Message, path: str) -> tuple[Message, str]:
    *parents, leaf = path.split(".")
    for name in parents:
        msg = getattr(msg, name)
    return msg, leaf


Mutation = Callable[[broker_pb2.VerifyRequest], None]


def _set(path: str, value: Any) -> Mutation:
    def apply(req: broker_pb2.VerifyRequest) -> None:
        target, leaf = _walk(req, path)
        setattr(target, leaf, value)

    return apply


def _clear(path: str) -> Mutation:
    def apply(req: broker_pb2.VerifyRequest) -> None:
        target, leaf = _walk(req, path)
        target.ClearField(leaf)

    return apply


def _checks(change: Callable[[list[broker_pb2.Check]], list[broker_pb2.Check]]) -> Mutation:
    def apply(req: broker_pb2.VerifyRequest) -> None:
        checks = change(
            [
                broker_pb2.Check(certificate_type_id=c.certificate_type_id, parameters=dict(c.parameters))
                for c in req.checks
            ]
        )
        del req.checks[:]
        req.checks.extend(checks)

    return apply


def _scalar_mutations(descriptor: Descriptor) -> st.SearchStrategy[Mutation]:
    options = []
    for path, field in leaf_paths(descriptor):
        if field.type == FieldDescriptor.TYPE_STRING:
            options.append(st.builds(_set, st.just(path), texts()))
        elif field.type == FieldDescriptor.TYPE_ENUM:
            options.append(st.builds(_set, st.just(path), enum_numbers(field)))
    return st.one_of(options)


def _at(i: int, items: list[Any]) -> int:
    return i % len(items) if items else 0


def _check_cid(i: int, cid: str) -> Callable[[list[broker_pb2.Check]], list[broker_pb2.Check]]:
    def change(checks: list[broker_pb2.Check]) -> list[broker_pb2.Check]:
        if checks:
            checks[_at(i, checks)].certificate_type_id = cid
        return checks

    return change


def _check_param(
    i: int, params: dict[str, str]
) -> Callable[[list[broker_pb2.Check]], list[broker_pb2.Check]]:
    def change(checks: list[broker_pb2.Check]) -> list[broker_pb2.Check]:
        if checks:
            checks[_at(i, checks)].parameters.update(params)
        return checks

    return change


def _repeat(i: int, n: int) -> Callable[[list[broker_pb2.Check]], list[broker_pb2.Check]]:
    def change(checks: list[broker_pb2.Check]) -> list[broker_pb2.Check]:
        return checks + [checks[_at(i, checks)]] * n if checks else checks

    return change


param_values = st.one_of(texts(), st.integers(-(10**30), 10**30).map(str), st.dates().map(str))
param_names = st.one_of(st.sampled_from(["municipality_code", "threshold_eur", "fiscal_year"]), texts())
check_mutations = st.one_of(
    st.builds(_check_cid, st.integers(0, 9), st.one_of(st.sampled_from(CERTIFICATE_TYPES), texts())),
    st.builds(_check_param, st.integers(0, 9), st.dictionaries(param_names, param_values, max_size=3)),
    st.builds(
        _check_param,
        st.integers(0, 9),
        st.builds(lambda n, v: {f"p{i}": v for i in range(n)}, st.integers(15, 1_000), short_texts()),
    ),
    st.builds(_repeat, st.integers(0, 9), st.one_of(st.integers(1, 12), st.integers(13, 200))),
    st.just(lambda checks: []),
    st.builds(
        lambda cids: lambda checks: [broker_pb2.Check(certificate_type_id=c) for c in cids],
        st.lists(st.sampled_from(CERTIFICATE_TYPES), min_size=1, max_size=6),
    ),
    st.builds(
        lambda extra: lambda checks: checks + extra,
        sized(
            messages(broker_pb2.Check.DESCRIPTOR, depth=1),
            small=3,
            huge=500,
            cheap=messages(broker_pb2.Check.DESCRIPTOR, depth=1, text=short_texts()),
        ),
    ),
)
verify_mutations = st.one_of(
    _scalar_mutations(broker_pb2.VerifyRequest.DESCRIPTOR),
    st.builds(_clear, st.sampled_from(message_paths(broker_pb2.VerifyRequest.DESCRIPTOR))),
    st.builds(_checks, check_mutations),
)


@st.composite
def broken_requests(draw: Callable[[st.SearchStrategy[Any]], Any]) -> broker_pb2.VerifyRequest:
    """A valid housing request (fresh id) with one to three things broken."""
    request = verify_request(draw(st.sampled_from(RESIDENTS)), request_id=uuid.uuid4().hex)
    for mutate in draw(st.lists(verify_mutations, min_size=1, max_size=3)):
        mutate(request)
    return request


def check_reply(reply: broker_pb2.VerifyResponse, what: str) -> None:
    """A granted request: each outcome is a check status, and no provider bug shows through."""
    for outcome in reply.outcomes:
        assert outcome.status != broker_pb2.CHECK_STATUS_UNSPECIFIED, what
        assert "INTERNAL" not in outcome.detail and "UNKNOWN" not in outcome.detail, (what, outcome)


def _verify(hostile: HostilePlatform, request: broker_pb2.VerifyRequest) -> None:
    outcome, reply = hostile.run(call(lambda: hostile.broker_stub.Verify(request, timeout=30)))
    assert_deliberate(outcome, VERIFY_ALLOWED, "Verify")
    record(f"Verify {outcome[0].name}")
    if reply is not None:
        check_reply(reply, "Verify")
    hostile.tick()


@settings(max_examples=examples(300))
@given(request=messages(broker_pb2.VerifyRequest.DESCRIPTOR))
def test_verify_random_requests(hostile: HostilePlatform, request: broker_pb2.VerifyRequest) -> None:
    _verify(hostile, request)


@settings(max_examples=examples(500))
@given(request=broken_requests())
def test_verify_broken_requests(hostile: HostilePlatform, request: broker_pb2.VerifyRequest) -> None:
    _verify(hostile, request)


@settings(max_examples=examples(60))
@given(request=broken_requests(), reuse=st.sampled_from(["hostile-reused-1", "hostile-reused-2"]))
def test_verify_reused_request_ids(
    hostile: HostilePlatform, request: broker_pb2.VerifyRequest, reuse: str
) -> None:
    """The same request id with bodies that differ (ALREADY_EXISTS) or not (the stored answer)."""
    request.request_id = reuse
    _verify(hostile, request)


# --- VerifyBulk -----------------------------------------------------------------------------


def _valid_header(window: int) -> broker_pb2.BulkVerifyRequest:
    template = verify_request(RESIDENTS[0])
    return broker_pb2.BulkVerifyRequest(
        header=broker_pb2.BulkHeader(
            consumer=template.consumer,
            purpose=template.purpose,
            legal_basis=template.legal_basis,
            checks=template.checks,
            window=window,
        )
    )


def _valid_subject(r: synthetic.Resident) -> broker_pb2.BulkVerifyRequest:
    return broker_pb2.BulkVerifyRequest(
        subject=broker_pb2.BulkSubject(
            request_id=uuid.uuid4().hex,
            subject=common_pb2.Subject(
                document_type=common_pb2.DocumentType.Value(f"DOCUMENT_TYPE_{r.document_type}"),
                document_number=r.document_number,
            ),
        )
    )


def _broken_header(request: broker_pb2.VerifyRequest, window: int) -> broker_pb2.BulkVerifyRequest:
    return broker_pb2.BulkVerifyRequest(
        header=broker_pb2.BulkHeader(
            consumer=request.consumer,
            purpose=request.purpose,
            legal_basis=request.legal_basis,
            checks=request.checks,
            window=window,
        )
    )


windows = st.one_of(st.just(0), st.integers(1, 300), st.integers(0, 2**32 - 1))
headers = st.one_of(
    st.builds(_valid_header, windows),
    st.builds(_broken_header, broken_requests(), windows),
    st.builds(
        lambda h: broker_pb2.BulkVerifyRequest(header=h),
        messages(broker_pb2.BulkHeader.DESCRIPTOR, max_depth=2),
    ),
)
subjects = st.one_of(
    st.builds(_valid_subject, st.sampled_from(RESIDENTS)),
    st.builds(
        lambda s: broker_pb2.BulkVerifyRequest(subject=s),
        messages(broker_pb2.BulkSubject.DESCRIPTOR, max_depth=2),
    ),
)
items = st.one_of(subjects, headers, st.just(broker_pb2.BulkVerifyRequest()))
streams = st.one_of(
    st.builds(lambda h, rest: [h, *rest], headers, st.lists(items, max_size=6)),  # header first
    st.builds(lambda h, rest: [h, *rest], st.builds(_valid_header, windows), st.lists(subjects, max_size=6)),
    st.lists(items, max_size=6),  # anything in any order, the empty stream included
)


def _bulk(hostile: HostilePlatform, stream: list[broker_pb2.BulkVerifyRequest]) -> None:
    results = []
    try:
        for result in hostile.sync_broker_stub.VerifyBulk(iter(stream), timeout=60):
            results.append(result)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        outcome = (exc.code(), exc.details() or "", rich_status(exc.trailing_metadata()))
        assert_deliberate(outcome, VERIFY_ALLOWED - {S.OK}, "VerifyBulk")
    for result in results:
        kind = result.WhichOneof("result")
        assert kind is not None, result
        if kind == "error":
            assert_status_message(result.error, "VerifyBulk result")
        else:
            check_reply(result.response, "VerifyBulk result")
    hostile.tick(every=25)


@settings(max_examples=examples(150))
@given(stream=streams)
def test_verify_bulk_streams(hostile: HostilePlatform, stream: list[broker_pb2.BulkVerifyRequest]) -> None:
    _bulk(hostile, stream)


def test_bulk_with_only_headers_and_empty_items(hostile: HostilePlatform) -> None:
    """Fixed shapes worth checking every run, whatever hypothesis draws."""
    for stream in (
        [],
        [broker_pb2.BulkVerifyRequest()],
        [_valid_subject(RESIDENTS[0])],
        [_valid_header(0), _valid_header(0)],
        [_valid_header(2**32 - 1), broker_pb2.BulkVerifyRequest(), _valid_subject(RESIDENTS[1])],
    ):
        _bulk(hostile, stream)


def test_checks_of_every_certificate_type(hostile: HostilePlatform) -> None:
    """Each catalog type alone, with nothing and with junk parameters: never an internal error."""
    for cid in CERTIFICATE_TYPES:
        for params in (
            {},
            {"municipality_code": "\x00"},
            {"threshold_eur": "9" * 200},
            dict(HOUSING_CHECKS)["registry.residence/v1"],
        ):
            request = verify_request(RESIDENTS[0], checks=[(cid, params)])
            _verify(hostile, request)
    for value in REALISTIC:
        _verify(
            hostile,
            verify_request(
                RESIDENTS[0], checks=[("tax.income-below-threshold/v1", {"threshold_eur": value})]
            ),
        )
