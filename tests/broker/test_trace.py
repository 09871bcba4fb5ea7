"""The trace ledger seen from outside: one row per request, no personal data at rest, fail closed."""

from __future__ import annotations

import json
import sqlite3

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.providers import synthetic
from onceonly.v1 import broker_pb2, common_pb2
from tests.conftest import (
    HOUSEHOLD,
    HOUSING_CHECKS,
    Platform,
    resident,
    verify_failure,
    verify_request,
)
from tests.consumers.test_cli import cli
from tests.consumers.test_oversight_cli import oversight

ALL_CHECKS = (*HOUSING_CHECKS, (HOUSEHOLD, {}))


def _statuses(row: sqlite3.Row) -> dict[str, str]:
    return {o["certificate_type_id"]: o["status"] for o in json.loads(row["outcomes"])}


def _database_bytes(platform: Platform) -> dict[str, bytes]:
    files = [
        platform.db_path,
        *(platform.db_path.with_name(platform.db_path.name + s) for s in ("-wal", "-shm")),
    ]
    return {p.name: p.read_bytes() for p in files if p.exists()}


async def test_mixed_workload_leaves_one_row_each_and_no_personal_data(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    stub = platform.stub(app)
    granted = resident(lambda r: r.document_type == "DNI")
    nie = resident(lambda r: r.document_type == "NIE")
    unknown_to_tax = synthetic.find(
        lambda r: r.known_to_registry and r.known_to_employment and not r.known_to_tax
    )
    denied = resident(lambda r: r.document_type == "DNI" and r not in (granted, nie))
    officer = resident(lambda r: r not in (granted, nie, denied))
    after_stop = resident(lambda r: r not in (granted, nie, denied, officer))

    replies = {}
    for name, r in (("granted", granted), ("nie", nie), ("not-found", unknown_to_tax)):
        replies[name] = await stub.Verify(
            verify_request(r, request_id=f"req-{name}", checks=ALL_CHECKS), timeout=10
        )
    parking = await verify_failure(
        stub, verify_request(denied, request_id="req-denied", procedure_code="PARKING-PERMIT")
    )
    self_query = verify_request(officer, request_id="req-self")
    self_query.consumer.officer_document.CopyFrom(self_query.subject)
    selfish = await verify_failure(stub, self_query)
    # An officer document that is not the subject's is used, never stored.
    with_officer = verify_request(after_stop, request_id="req-officer-doc")
    with_officer.consumer.officer_document.CopyFrom(
        common_pb2.Subject(document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number=denied.document_number)
    )
    replies["officer-doc"] = await stub.Verify(with_officer, timeout=10)
    await platform.providers["employment"].stop(0)
    replies["provider-down"] = await stub.Verify(
        verify_request(after_stop, request_id="req-provider-down", checks=ALL_CHECKS), timeout=10
    )
    # A retry is answered, not traced again.
    assert (
        await stub.Verify(verify_request(granted, request_id="req-granted", checks=ALL_CHECKS), timeout=10)
        == (replies["granted"])
    )

    assert parking.code == grpc.StatusCode.PERMISSION_DENIED
    assert selfish.info is not None and selfish.info.reason == "SELF_QUERY_FORBIDDEN"
    assert replies["granted"].outcomes[-1].claims["household_size"] == granted.household_size

    rows = {row["request_id"]: row for row in platform.trace_rows()}
    assert sorted(rows) == sorted(
        [
            "req-granted",
            "req-nie",
            "req-not-found",
            "req-denied",
            "req-self",
            "req-officer-doc",
            "req-provider-down",
        ]
    )
    for name, reply in replies.items():
        row = rows[reply.request_id]
        assert row["trace_id"] == reply.trace_id, name
        assert row["decision"] == "GRANTED"
        assert row["denial_reason"] is None
        assert _statuses(row) == {
            o.certificate_type_id: broker_pb2.CheckStatus.Name(o.status).removeprefix("CHECK_STATUS_")
            for o in reply.outcomes
        }
    assert set(_statuses(rows["req-granted"]).values()) == {"VERIFIED"}
    assert _statuses(rows["req-not-found"])["tax.compliance/v1"] == "SUBJECT_NOT_FOUND"
    assert _statuses(rows["req-provider-down"])["employment.unemployment-status/v1"] == "UNAVAILABLE"
    assert _statuses(rows["req-provider-down"])["registry.household/v1"] == "VERIFIED"
    for request_id, reason in (
        ("req-denied", "PROCEDURE_NOT_AUTHORISED"),
        ("req-self", "SELF_QUERY_FORBIDDEN"),
    ):
        assert rows[request_id]["decision"] == "DENIED"
        assert rows[request_id]["denial_reason"] == reason
        assert _statuses(rows[request_id]) == {}
    assert rows["req-granted"]["subject_document_type"] == "DNI"
    assert rows["req-nie"]["subject_document_type"] == "NIE"
    assert rows["req-granted"]["purpose_text"] == "Rent subsidy application"

    files = _database_bytes(platform)
    assert platform.db_path.name in files
    documents = [r.document_number for r in (granted, nie, unknown_to_tax, denied, officer, after_stop)]
    leaks = [
        (name, needle)
        for name, data in files.items()
        for needle in [
            *(n.encode() for n in documents),
            b'"household_size":',
            b'"below_threshold":',
            b'"registered_unemployed":',
            b'"registered":',
        ]
        if needle in data
    ]
    assert leaks == []


async def test_ledger_unavailable_fails_closed_and_recovers(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker(db_busy_timeout_ms=100)
    stub = platform.stub(app)
    request = verify_request(request_id="req-ledger-1")

    blocker = sqlite3.connect(platform.db_path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        failure = await verify_failure(stub, request)
        denied = await verify_failure(
            stub, verify_request(request_id="req-ledger-2", procedure_code="PARKING-PERMIT")
        )
    finally:
        blocker.rollback()
        blocker.close()

    assert failure.code == grpc.StatusCode.UNAVAILABLE
    assert failure.info is not None and failure.info.reason == "LEDGER_UNAVAILABLE"
    assert b"eyJ" not in failure.raw_details  # no attestation (JWS) in the error
    assert "Traceback" not in failure.message
    # Denials need a trace too: without one, the broker does not answer at all.
    assert denied.code == grpc.StatusCode.UNAVAILABLE
    assert platform.trace_rows() == []

    reply = await stub.Verify(request, timeout=10)

    assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED and o.attestation for o in reply.outcomes)
    (row,) = platform.trace_rows(request_id="req-ledger-1")
    assert row["trace_id"] == reply.trace_id
    assert await stub.Verify(request, timeout=10) == reply
    assert len(platform.trace_rows()) == 1


async def test_a_granted_trace_names_the_agreement_version_behind_each_check(
    platform: Platform, broker: BrokerApp
) -> None:
    """What allowed a request is part of its trace (and of the hash chain): the agreement and its
    version, per certificate type; a denial names none."""
    stub = platform.stub(broker)
    await stub.Verify(verify_request(), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Verify(verify_request(procedure_code="PARKING-PERMIT"), timeout=10)
    granted = platform.trace_rows(decision="GRANTED")[0]
    assert sorted(json.loads(granted["agreements"])) == sorted(
        [cid, "madrid-housing-rent-subsidy", 1] for cid, _ in HOUSING_CHECKS
    )
    assert platform.trace_rows(decision="DENIED")[0]["agreements"] == ""
    code, out, err = await cli("ledger", "verify", "--var-dir", str(platform.var_dir))
    assert code == 0, out + err


async def test_oversight_sees_which_agreement_allowed_a_request(
    platform: Platform, broker: BrokerApp
) -> None:
    await platform.stub(broker).Verify(verify_request(), timeout=10)
    code, out, err = await oversight(platform, broker, "traces", "--json")
    assert code == 0, out + err
    [trace] = json.loads(out)
    assert {tuple(a)[1:] for a in trace["agreements"]} == {("madrid-housing-rent-subsidy", 1)}
