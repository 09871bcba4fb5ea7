"""Asynchronous verifications: a submission is a durable job, decided in the background, each subject
traced exactly once, its results readable by its own organisation only."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid

import grpc
import pytest
from google.rpc import code_pb2

from onceonly.broker.app import BrokerApp
from onceonly.broker.jobs import purge_jobs
from onceonly.broker.storage import create_engine
from onceonly.providers import synthetic
from onceonly.providers.reference import DeferringAdapter, reference_adapter
from onceonly.v1 import broker_pb2, common_pb2
from tests.conftest import (
    MUNICIPALITY,
    RESIDENCE,
    GatedAdapter,
    Platform,
    known_everywhere,
    rpc_failure,
    verify_request,
)

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def residents(n: int) -> list[synthetic.Resident]:
    """``n`` distinct residents known to every agency."""
    return [r for r in synthetic.population() if known_everywhere(r)][:n]


def submission(
    residents: list[synthetic.Resident],
    *,
    window: int = 0,
    bad_numbers: tuple[str, ...] = (),
    checks: tuple[tuple[str, dict[str, str]], ...] | None = None,
) -> broker_pb2.SubmitVerificationRequest:
    template = verify_request() if checks is None else verify_request(checks=checks)
    header = broker_pb2.BulkHeader(
        consumer=template.consumer,
        purpose=template.purpose,
        legal_basis=template.legal_basis,
        checks=template.checks,
        window=window,
    )
    subjects = [
        broker_pb2.BulkSubject(
            request_id=f"job-{uuid.uuid4().hex[:12]}",
            subject=verify_request(r).subject,
        )
        for r in residents
    ]
    for number in bad_numbers:
        subjects.append(
            broker_pb2.BulkSubject(
                request_id=f"job-{uuid.uuid4().hex[:12]}",
                subject=common_pb2.Subject(
                    document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number=number
                ),
            )
        )
    return broker_pb2.SubmitVerificationRequest(
        submission_id=f"sub-{uuid.uuid4().hex[:12]}", header=header, subjects=subjects
    )


async def until_done(platform: Platform, app: BrokerApp, job_id: str) -> broker_pb2.VerificationJob:
    stub = platform.stub(app)
    for _ in range(200):  # at most 20 s
        job = await stub.GetVerificationResult(
            broker_pb2.GetVerificationResultRequest(job_id=job_id), timeout=10
        )
        if job.state == broker_pb2.JOB_STATE_DONE:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} never finished (state {job.state}, {job.decided}/{job.subjects})")


def traces_of(platform: Platform, request_ids: list[str]) -> dict[str, int]:
    conn = sqlite3.connect(platform.db_path)
    try:
        return {
            rid: conn.execute("SELECT count(*) FROM trace_records WHERE request_id = ?", (rid,)).fetchone()[0]
            for rid in request_ids
        }
    finally:
        conn.close()


async def test_a_submission_is_answered_at_once_and_decided_in_the_background(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    people = residents(3)
    request = submission(people, bad_numbers=("12345678A",))
    job = await platform.stub(app).SubmitVerification(request, timeout=10)
    assert job.job_id and job.submission_id == request.submission_id
    assert job.state in (broker_pb2.JOB_STATE_PENDING, broker_pb2.JOB_STATE_IN_PROGRESS)
    assert job.subjects == 4
    assert job.estimated_done_at.ToDatetime() >= job.submitted_at.ToDatetime()
    assert job.expires_at.ToDatetime() > job.submitted_at.ToDatetime()
    assert not job.results, "no results before the job is done"

    done = await until_done(platform, app, job.job_id)
    assert done.decided == 4 and done.done_at.seconds
    assert [r.request_id for r in done.results] == [s.request_id for s in request.subjects]
    for result in done.results[:3]:
        assert result.WhichOneof("result") == "response"
        assert [o.status for o in result.response.outcomes] == [broker_pb2.CHECK_STATUS_VERIFIED] * len(
            request.header.checks
        )
        assert result.response.outcomes[0].attestation
    bad = done.results[3]
    assert bad.error.code == code_pb2.INVALID_ARGUMENT and "check letter" in bad.error.message
    # Each decided subject traced once; the refused one not at all.
    ids = [s.request_id for s in request.subjects]
    assert traces_of(platform, ids) == {**{rid: 1 for rid in ids[:3]}, ids[3]: 0}


async def test_submitting_again_answers_the_same_job_and_another_body_is_refused(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    stub = platform.stub(app)
    request = submission(residents(1))
    first = await stub.SubmitVerification(request, timeout=10)
    again = await stub.SubmitVerification(request, timeout=10)
    assert again.job_id == first.job_id

    changed = broker_pb2.SubmitVerificationRequest()
    changed.CopyFrom(request)
    changed.subjects[0].request_id = "another-id"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.SubmitVerification(changed, timeout=10)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    failure = rpc_failure(caught.value)
    assert failure.info is not None and failure.info.reason == "DUPLICATE_SUBMISSION_ID"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.ClearField("subjects"), "subjects"),
        (lambda r: setattr(r, "submission_id", ""), "submission_id"),
        (lambda r: setattr(r.subjects[1], "request_id", r.subjects[0].request_id), "subjects[1].request_id"),
        (lambda r: setattr(r.header.purpose, "procedure_code", ""), "header.purpose.procedure_code"),
    ],
)
async def test_a_bad_submission_names_its_field_and_stores_nothing(
    platform: Platform, change: object, field: str
) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    request = submission(residents(2))
    change(request)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await platform.stub(app).SubmitVerification(request, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
    conn = sqlite3.connect(platform.db_path)
    try:
        assert conn.execute("SELECT count(*) FROM verification_jobs").fetchone()[0] == 0
    finally:
        conn.close()


async def test_another_organisations_job_is_permission_denied(platform: Platform) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker()
    job = await platform.stub(app).SubmitVerification(submission(residents(1)), timeout=10)
    other = platform.stub(app).as_org("P0801900B")  # type: ignore[attr-defined]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await other.GetVerificationResult(
            broker_pb2.GetVerificationResultRequest(job_id=job.job_id), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    failure = rpc_failure(caught.value)
    assert failure.info is not None and failure.info.reason == "NOT_YOUR_JOB"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await platform.stub(app).GetVerificationResult(
            broker_pb2.GetVerificationResultRequest(job_id="no-such-job"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_job_survives_a_broker_restart_and_every_subject_is_traced_once(platform: Platform) -> None:
    """The broker stops while a subject is waiting on the tax agency; the next broker on the same
    database takes the job over, and the job ends with each subject traced exactly once."""
    gated = GatedAdapter(reference_adapter("tax"))
    await platform.start_reference_providers(tax=gated)
    first = await platform.start_broker()
    request = submission(residents(4), window=1)
    job = await platform.stub(first).SubmitVerification(request, timeout=10)
    await asyncio.wait_for(gated.entered.wait(), 10)
    await first.stop(0)

    gated.gate.set()
    second = await platform.start_broker()
    done = await until_done(platform, second, job.job_id)
    assert all(r.WhichOneof("result") == "response" for r in done.results)
    ids = [s.request_id for s in request.subjects]
    assert traces_of(platform, ids) == {rid: 1 for rid in ids}

    # A subject decided but not recorded with its job (a crash between the two) is answered from
    # the ledger when the job is taken up again: still one trace each.
    conn = sqlite3.connect(platform.db_path)
    try:
        conn.execute("DELETE FROM verification_job_items WHERE job_id = ?", (job.job_id,))
        conn.execute("UPDATE verification_jobs SET state = 'IN_PROGRESS' WHERE job_id = ?", (job.job_id,))
        conn.commit()
    finally:
        conn.close()
    again = await until_done(platform, second, job.job_id)
    assert [r.response.trace_id for r in again.results] == [r.response.trace_id for r in done.results]
    assert traces_of(platform, ids) == {rid: 1 for rid in ids}


async def test_results_expire_with_the_retention_period(platform: Platform) -> None:
    """Past ``expires_at`` (submission + ONCEONLY_RETENTION_DAYS) a job reads EXPIRED, without results,
    and no broker works on it any more."""
    await platform.start_reference_providers()
    app = await platform.start_broker(retention_days=30)
    stub = platform.stub(app)
    job = await stub.SubmitVerification(submission(residents(1)), timeout=10)
    days = (job.expires_at.ToDatetime() - job.submitted_at.ToDatetime()).days
    assert days == 30
    done = await until_done(platform, app, job.job_id)
    assert done.results
    conn = sqlite3.connect(platform.db_path)
    try:
        conn.execute(
            "UPDATE verification_jobs SET expires_at = '2020-01-01 00:00:00.000000' WHERE job_id = ?",
            (job.job_id,),
        )
        conn.commit()
    finally:
        conn.close()
    read = await stub.GetVerificationResult(
        broker_pb2.GetVerificationResultRequest(job_id=job.job_id), timeout=10
    )
    assert read.state == broker_pb2.JOB_STATE_EXPIRED and not read.results


async def test_purging_removes_expired_jobs_and_keeps_the_others(platform: Platform) -> None:
    """`onceonly ledger purge` drops expired jobs with their sealed submissions (they name residents)."""
    await platform.start_reference_providers()
    app = await platform.start_broker()
    stub = platform.stub(app)
    old = await stub.SubmitVerification(submission(residents(1)), timeout=10)
    kept = await stub.SubmitVerification(submission(residents(2)), timeout=10)
    await until_done(platform, app, old.job_id)
    await until_done(platform, app, kept.job_id)
    conn = sqlite3.connect(platform.db_path)
    try:
        conn.execute(
            "UPDATE verification_jobs SET expires_at = '2020-01-01 00:00:00.000000' WHERE job_id = ?",
            (old.job_id,),
        )
        conn.commit()
    finally:
        conn.close()
    engine = create_engine(f"sqlite:///{platform.db_path}")
    try:
        now = dt.datetime.now(dt.UTC)
        assert purge_jobs(engine, now - dt.timedelta(days=30), now) == 1
    finally:
        engine.dispose()
    conn = sqlite3.connect(platform.db_path)
    try:
        jobs = [r[0] for r in conn.execute("SELECT job_id FROM verification_jobs")]
        items = {r[0] for r in conn.execute("SELECT job_id FROM verification_job_items")}
    finally:
        conn.close()
    assert jobs == [kept.job_id] and items == {kept.job_id}


async def test_an_agency_that_answers_later_is_waited_for_by_a_job_and_named_to_a_verify(
    platform: Platform,
) -> None:
    """The tax agency defers every answer (Attest PENDING, ready in 0.3 s). A job waits and collects
    it (its evidence checked as any answer's: VERIFIED); a synchronous Verify is not kept waiting:
    that check is UNAVAILABLE, saying when the agency answers and to submit asynchronously."""
    await platform.start_reference_providers(tax=DeferringAdapter(reference_adapter("tax"), 0.3))
    app = await platform.start_broker()
    reply = await platform.stub(app).Verify(verify_request(), timeout=10)
    tax = [o for o in reply.outcomes if o.provider_id == "tax"]
    assert tax and all(o.status == broker_pb2.CHECK_STATUS_UNAVAILABLE for o in tax)
    assert all("answers this later" in o.detail and "SubmitVerification" in o.detail for o in tax)
    others = [o for o in reply.outcomes if o.provider_id != "tax"]
    assert others and all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in others)

    request = submission(residents(2))
    job = await platform.stub(app).SubmitVerification(request, timeout=10)
    done = await until_done(platform, app, job.job_id)
    for result in done.results:
        assert [o.status for o in result.response.outcomes] == [broker_pb2.CHECK_STATUS_VERIFIED] * len(
            request.header.checks
        ), result
    ids = [s.request_id for s in request.subjects]
    assert traces_of(platform, ids) == {rid: 1 for rid in ids}


async def test_a_job_waiting_on_an_agency_that_answers_later_does_not_hold_back_another(
    platform: Platform,
) -> None:
    """The tax agency answers in an hour: the first job waits for it; a job submitted after it,
    asking only the population register, is done meanwhile."""
    await platform.start_reference_providers(tax=DeferringAdapter(reference_adapter("tax"), 3600))
    app = await platform.start_broker()
    stub = platform.stub(app)
    waiting = await stub.SubmitVerification(submission(residents(1)), timeout=10)
    register_only = await stub.SubmitVerification(
        submission(residents(2), checks=((RESIDENCE, {"municipality_code": MUNICIPALITY}),)), timeout=10
    )
    done = await until_done(platform, app, register_only.job_id)
    assert all(r.response.outcomes[0].status == broker_pb2.CHECK_STATUS_VERIFIED for r in done.results)
    still = await stub.GetVerificationResult(
        broker_pb2.GetVerificationResultRequest(job_id=waiting.job_id), timeout=10
    )
    assert still.state == broker_pb2.JOB_STATE_IN_PROGRESS and still.decided == 0 and not still.results
