"""The jobs' store on both databases: idempotent submission, leases that exclude, records kept once."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from onceonly.broker.jobs import DONE, IN_PROGRESS, PENDING, JobConflict, JobRunner, JobStore, purge_jobs
from onceonly.broker.ledger import ReplyCipher
from onceonly.broker.storage import init_schema
from onceonly.v1 import broker_pb2, common_pb2

NOW = dt.datetime(2026, 12, 8, 9, 0, tzinfo=dt.UTC)
ORG = "L01280796"


def submission(submission_id: str, subjects: int = 2) -> broker_pb2.SubmitVerificationRequest:
    return broker_pb2.SubmitVerificationRequest(
        submission_id=submission_id,
        header=broker_pb2.BulkHeader(consumer=common_pb2.Consumer(organization_id=ORG)),
        subjects=[
            broker_pb2.BulkSubject(
                request_id=f"{submission_id}-{i}",
                subject=common_pb2.Subject(
                    document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number="35731890X"
                ),
            )
            for i in range(subjects)
        ],
    )


@pytest.fixture
def store(engine: sa.Engine, tmp_path: Path) -> JobStore:
    init_schema(engine)
    return JobStore(engine, ReplyCipher.from_key_file(tmp_path / "replies.key"))


def test_submission_is_idempotent_sealed_and_conflicts_are_named(store: JobStore, engine: sa.Engine) -> None:
    job, created = store.submit(ORG, submission("s-1"), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30))
    assert created and job.state == PENDING and job.subjects == 2 and job.decided == 0
    again, created_again = store.submit(
        ORG, submission("s-1"), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30)
    )
    assert not created_again and again.job_id == job.job_id
    with pytest.raises(JobConflict):
        store.submit(ORG, submission("s-1", subjects=3), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30))
    assert store.open(job) == submission("s-1")
    with engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT submission FROM verification_jobs")).scalar_one()
    assert b"35731890X" not in bytes(raw), "the submission names a resident: it is sealed at rest"


def test_leases_exclude_other_brokers_and_the_jobs_already_running(store: JobStore) -> None:
    first, _ = store.submit(ORG, submission("s-1"), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30))
    second, _ = store.submit(
        ORG, submission("s-2"), "CERTIFICATE", NOW + dt.timedelta(seconds=1), NOW + dt.timedelta(days=30)
    )
    leased = store.lease_next("broker-a", NOW)
    assert leased is not None and leased.job_id == first.job_id and leased.state == IN_PROGRESS
    # Another broker does not get a leased job; the next one instead.
    other = store.lease_next("broker-b", NOW)
    assert other is not None and other.job_id == second.job_id
    assert store.lease_next("broker-c", NOW) is None
    # The lease holder may take its own job back (a restart), unless it is running it already.
    assert store.lease_next("broker-a", NOW, besides={first.job_id}) is None
    mine = store.lease_next("broker-a", NOW)
    assert mine is not None and mine.job_id == first.job_id
    # Once a lease runs out, anyone may take the job.
    later = store.lease_next("broker-c", NOW + dt.timedelta(minutes=5))
    assert later is not None and later.job_id == first.job_id


def test_a_subject_is_recorded_once_and_purging_drops_expired_jobs(
    store: JobStore, engine: sa.Engine
) -> None:
    job, _ = store.submit(ORG, submission("s-1"), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30))
    store.record(job.job_id, 0, "s-1-0", None, "broker-a", NOW)
    store.record(job.job_id, 0, "s-1-0", b"ignored", "broker-a", NOW)  # decided again after a crash
    store.record(job.job_id, 1, "s-1-1", b"refusal", "broker-a", NOW)
    assert store.decided_positions(job.job_id) == {0, 1}
    assert [(i.position, i.error) for i in store.items(job.job_id)] == [(0, None), (1, b"refusal")]
    store.finish(job.job_id, NOW)
    done = store.get(job.job_id)
    assert done is not None and done.state == DONE and done.decided == 2 and done.done_at == NOW
    assert store.lease_next("broker-b", NOW) is None, "a finished job is not taken up again"

    fresh, _ = store.submit(ORG, submission("s-2"), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30))
    assert purge_jobs(engine, NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=31)) == 2
    assert store.get(job.job_id) is None and store.get(fresh.job_id) is None
    assert list(store.items(job.job_id)) == []


async def test_a_running_job_keeps_its_lease_while_a_subject_waits(store: JobStore) -> None:
    """A subject waits far longer than the lease (an agency answering later): the runner renews the
    lease meanwhile, so another broker never takes the job up and decides it twice."""
    job, _ = store.submit(ORG, submission("s-1", subjects=1), "CERTIFICATE", NOW, NOW + dt.timedelta(days=30))
    clock = [NOW]

    async def decide(
        header: broker_pb2.BulkHeader, item: broker_pb2.BulkSubject, identified: str
    ) -> broker_pb2.BulkVerifyResult:
        for _ in range(10):  # 1 s: ten times the lease, with the clock moving on
            await asyncio.sleep(0.1)
            clock[0] += dt.timedelta(seconds=0.1)
        return broker_pb2.BulkVerifyResult(request_id=item.request_id)

    runner = JobRunner(store, decide, "broker-a", lambda: clock[0], lease_s=0.1)
    leased = store.lease_next("broker-a", clock[0], 0.1)
    assert leased is not None
    running = asyncio.create_task(runner.run(leased))
    taken_by_another = []
    while not running.done():
        await asyncio.sleep(0.05)
        other = await asyncio.to_thread(store.lease_next, "broker-b", clock[0], 0.1)
        taken_by_another.append(other is not None)
    await running
    assert not any(taken_by_another), "another broker took up a job whose runner was alive"
    done = store.get(job.job_id)
    assert done is not None and done.state == DONE
