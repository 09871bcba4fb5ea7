"""Asynchronous verifications: a submission becomes a durable job, decided in the background.

``SubmitVerification`` stores the submission (sealed: it names residents) and answers at once
with a job id. A :class:`JobRunner` in every broker process takes the oldest unfinished job it
can lease, decides its subjects through the same path as ``VerifyBulk`` (policy, providers,
trace: each subject idempotent by its request id), and records each subject as decided. A broker
that stops — even killed — leaves its lease to run out; whichever broker takes the job next
skips the subjects recorded and decides the others, and a subject decided but not yet recorded
is answered from the ledger by its request id, so **every subject is traced exactly once**.

A subject's answer is not stored twice: a decided subject's result is the ledger's stored reply
for its request id; only a refusal that never reached the ledger (a bad document number) is kept
with the job, as its status. Results are kept until ``expires_at`` (the platform's retention
period); then the job reads ``EXPIRED``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from onceonly.broker.ledger import ReplyCipher
from onceonly.broker.storage import VerificationJobItemRow, VerificationJobRow
from onceonly.v1 import broker_pb2

log = logging.getLogger(__name__)

__all__ = [
    "ESTIMATED_SUBJECTS_PER_S",
    "JOB_DEFAULT_WINDOW",
    "JOB_MAX_SUBJECTS",
    "JOB_MAX_WINDOW",
    "JobConflict",
    "JobRunner",
    "JobStore",
    "StoredJob",
    "purge_jobs",
]

JOBS: sa.Table = VerificationJobRow.__table__  # type: ignore[attr-defined]
ITEMS: sa.Table = VerificationJobItemRow.__table__  # type: ignore[attr-defined]

JOB_MAX_SUBJECTS = 1000
JOB_DEFAULT_WINDOW = 16
JOB_MAX_WINDOW = 64
LEASE_S = 30.0
JOBS_AT_ONCE = 8
RETRY_AFTER_FAILURE_S = 5.0
"""Jobs one broker process works on at once."""
ESTIMATED_SUBJECTS_PER_S = 50.0
"""What the estimate of a job's end assumes of the subjects queued before it and its own."""

PENDING, IN_PROGRESS, DONE, EXPIRED = "PENDING", "IN_PROGRESS", "DONE", "EXPIRED"


class JobConflict(Exception):
    """The submission id was used before with another body."""


@dataclass(frozen=True, slots=True)
class StoredJob:
    job_id: str
    organization_id: str
    submission_id: str
    state: str
    subjects: int
    decided: int
    submitted_at: dt.datetime
    expires_at: dt.datetime
    done_at: dt.datetime | None
    officer_identification: str
    submission: bytes
    """Sealed; :meth:`JobStore.open` gives the ``SubmitVerificationRequest``."""

    def state_at(self, now: dt.datetime) -> str:
        return EXPIRED if now >= self.expires_at else self.state


def submission_digest(request: broker_pb2.SubmitVerificationRequest) -> str:
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


class JobStore:
    """The jobs in the database (blocking: call from a thread)."""

    def __init__(self, engine: sa.Engine, cipher: ReplyCipher) -> None:
        self._engine = engine
        self._cipher = cipher

    def _aad(self, organization_id: str, job_id: str) -> bytes:
        return ReplyCipher.aad(organization_id, f"job:{job_id}")

    def open(self, job: StoredJob) -> broker_pb2.SubmitVerificationRequest:
        """The submission a job was made from."""
        plain = self._cipher.open(job.submission, self._aad(job.organization_id, job.job_id))
        return broker_pb2.SubmitVerificationRequest.FromString(plain)

    def submit(
        self,
        organization_id: str,
        request: broker_pb2.SubmitVerificationRequest,
        officer_identification: str,
        now: dt.datetime,
        expires_at: dt.datetime,
    ) -> tuple[StoredJob, bool]:
        """Store a new job (``True``), or find the one this submission id made (``False``);
        ``JobConflict`` if that one was made from another body."""
        digest = submission_digest(request)
        existing = self._by_submission(organization_id, request.submission_id)
        if existing is None:
            job_id = uuid.uuid4().hex
            values = {
                "job_id": job_id,
                "organization_id": organization_id,
                "submission_id": request.submission_id,
                "submission_digest": digest,
                "submission": self._cipher.seal(
                    request.SerializeToString(), self._aad(organization_id, job_id)
                ),
                "officer_identification": officer_identification,
                "state": PENDING,
                "subjects": len(request.subjects),
                "submitted_at": now,
                "expires_at": expires_at,
                "done_at": None,
                "lease_owner": "",
                "lease_until": None,
            }
            try:
                with self._engine.begin() as conn:
                    conn.execute(JOBS.insert().values(**values))
            except sa.exc.IntegrityError:  # the same submission, at the same moment, elsewhere
                existing = self._by_submission(organization_id, request.submission_id)
                if existing is None:
                    raise
            else:
                job = self.get(job_id)
                assert job is not None
                return job, True
        if existing.submission_digest != digest:
            raise JobConflict(request.submission_id)
        job = self.get(existing.job_id)
        assert job is not None
        return job, False

    def _by_submission(self, organization_id: str, submission_id: str) -> Any:
        with self._engine.connect() as conn:
            return conn.execute(
                sa.select(JOBS.c.job_id, JOBS.c.submission_digest).where(
                    JOBS.c.organization_id == organization_id, JOBS.c.submission_id == submission_id
                )
            ).first()

    def get(self, job_id: str) -> StoredJob | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.job_id == job_id)).first()
            if row is None:
                return None
            decided = conn.execute(
                sa.select(sa.func.count()).select_from(ITEMS).where(ITEMS.c.job_id == job_id)
            ).scalar_one()
        return StoredJob(
            row.job_id,
            row.organization_id,
            row.submission_id,
            row.state,
            row.subjects,
            int(decided),
            row.submitted_at,
            row.expires_at,
            row.done_at,
            row.officer_identification,
            row.submission,
        )

    def subjects_queued_before(self, submitted_at: dt.datetime) -> int:
        """Subjects of unfinished jobs submitted before ``submitted_at`` not decided yet."""
        with self._engine.connect() as conn:
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(JOBS.c.subjects), 0)).where(
                    JOBS.c.state.in_((PENDING, IN_PROGRESS)), JOBS.c.submitted_at < submitted_at
                )
            ).scalar_one()
            decided = conn.execute(
                sa.select(sa.func.count())
                .select_from(ITEMS.join(JOBS, ITEMS.c.job_id == JOBS.c.job_id))
                .where(JOBS.c.state.in_((PENDING, IN_PROGRESS)), JOBS.c.submitted_at < submitted_at)
            ).scalar_one()
        return max(0, int(total) - int(decided))

    def lease_next(
        self, owner: str, now: dt.datetime, lease_s: float = LEASE_S, *, besides: Collection[str] = ()
    ) -> StoredJob | None:
        """Lease the oldest unfinished job that is free (or already ours, and not one of ``besides``,
        the jobs this process is working on), for ``lease_s``."""
        free = sa.or_(JOBS.c.lease_owner == owner, JOBS.c.lease_until.is_(None), JOBS.c.lease_until < now)
        unfinished = JOBS.c.state.in_((PENDING, IN_PROGRESS))
        with self._engine.begin() as conn:
            candidate = conn.execute(
                sa.select(JOBS.c.job_id)
                .where(unfinished, free, JOBS.c.expires_at > now, JOBS.c.job_id.not_in(list(besides)))
                .order_by(JOBS.c.submitted_at, JOBS.c.job_id)
                .limit(1)
            ).scalar()
            if candidate is None:
                return None
            taken = conn.execute(
                JOBS.update()
                .where(JOBS.c.job_id == candidate, unfinished, free)
                .values(state=IN_PROGRESS, lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease_s))
            ).rowcount
        return self.get(candidate) if taken else None

    def renew(self, job_id: str, owner: str, now: dt.datetime, lease_s: float = LEASE_S) -> bool:
        """Extend ``owner``'s lease on a job it is working on; ``False`` if the lease is not its own."""
        with self._engine.begin() as conn:
            renewed = conn.execute(
                JOBS.update()
                .where(JOBS.c.job_id == job_id, JOBS.c.lease_owner == owner)
                .values(lease_until=now + dt.timedelta(seconds=lease_s))
            ).rowcount
        return bool(renewed)

    def decided_positions(self, job_id: str) -> set[int]:
        with self._engine.connect() as conn:
            return set(conn.execute(sa.select(ITEMS.c.position).where(ITEMS.c.job_id == job_id)).scalars())

    def record(
        self,
        job_id: str,
        position: int,
        request_id: str,
        error: bytes | None,
        owner: str,
        now: dt.datetime,
        lease_s: float = LEASE_S,
    ) -> None:
        """Record one subject as decided (once: a second record of it is ignored), renew the lease."""
        with self._engine.begin() as conn:
            done = conn.execute(
                sa.select(sa.func.count())
                .select_from(ITEMS)
                .where(ITEMS.c.job_id == job_id, ITEMS.c.position == position)
            ).scalar_one()
            if not done:
                conn.execute(
                    ITEMS.insert().values(
                        job_id=job_id, position=position, request_id=request_id, error=error, decided_at=now
                    )
                )
            conn.execute(
                JOBS.update()
                .where(JOBS.c.job_id == job_id)
                .values(
                    state=sa.case((JOBS.c.state == PENDING, IN_PROGRESS), else_=JOBS.c.state),
                    lease_owner=owner,
                    lease_until=now + dt.timedelta(seconds=lease_s),
                )
            )

    def finish(self, job_id: str, now: dt.datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                JOBS.update()
                .where(JOBS.c.job_id == job_id)
                .values(state=DONE, done_at=now, lease_owner="", lease_until=None)
            )

    def items(self, job_id: str) -> list[Any]:
        """The decided subjects of a job, by position."""
        with self._engine.connect() as conn:
            return list(
                conn.execute(sa.select(ITEMS).where(ITEMS.c.job_id == job_id).order_by(ITEMS.c.position))
            )


def purge_jobs(engine: sa.Engine, cutoff: dt.datetime, now: dt.datetime) -> int:
    """Delete the jobs that expired by ``now`` or were submitted before ``cutoff`` (their sealed
    submissions name residents), with their subjects; return how many jobs went."""
    gone = sa.or_(JOBS.c.expires_at <= now, JOBS.c.submitted_at < cutoff)
    with engine.begin() as conn:
        conn.execute(sa.delete(ITEMS).where(ITEMS.c.job_id.in_(sa.select(JOBS.c.job_id).where(gone))))
        return conn.execute(sa.delete(JOBS).where(gone)).rowcount or 0


Decide = Callable[
    [broker_pb2.BulkHeader, broker_pb2.BulkSubject, str], Awaitable[broker_pb2.BulkVerifyResult]
]
"""Decide one subject under a header, for an officer identified as given (``VerifyBulk``'s path)."""


class JobRunner:
    """Works through unfinished jobs, oldest first, up to ``at_once`` jobs at a time per broker
    process: a job waiting for an agency that answers in hours does not hold the others back."""

    def __init__(
        self,
        store: JobStore,
        decide: Decide,
        owner: str,
        clock: Callable[[], dt.datetime],
        *,
        idle_s: float = 1.0,
        at_once: int = JOBS_AT_ONCE,
        lease_s: float = LEASE_S,
    ) -> None:
        if at_once < 1:
            raise ValueError("at_once must be at least 1")
        self._store = store
        self._decide = decide
        self._owner = owner
        self._clock = clock
        self._idle_s = idle_s
        self._at_once = at_once
        self._lease_s = lease_s
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._resting: dict[str, float] = {}
        """Jobs that failed for now, and until when (``time.monotonic``) this process leaves them."""

    def wake(self) -> None:
        """A job was submitted, or one finished: look now rather than at the next idle tick."""
        self._wake.set()

    async def run_forever(self) -> None:
        try:
            while True:
                if len(self._running) < self._at_once:
                    try:
                        now = time.monotonic()
                        self._resting = {j: t for j, t in self._resting.items() if t > now}
                        job = await asyncio.to_thread(
                            self._store.lease_next,
                            self._owner,
                            self._clock(),
                            self._lease_s,
                            besides={*self._running, *self._resting},
                        )
                    except Exception:  # the database is down, say: try again after a pause
                        log.exception("asynchronous verifications: cannot work on jobs now")
                        job = None
                    if job is not None:
                        self._start(job)
                        continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_s)
        finally:
            running = list(self._running.values())
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _start(self, job: StoredJob) -> None:
        task = asyncio.create_task(self._run_logged(job))
        self._running[job.job_id] = task

        def finished(_: asyncio.Task[None]) -> None:
            self._running.pop(job.job_id, None)
            self._wake.set()

        task.add_done_callback(finished)

    async def _run_logged(self, job: StoredJob) -> None:
        try:
            await self.run(job)
        except Exception:  # left to its lease: this or another broker takes it up again, later
            self._resting[job.job_id] = time.monotonic() + RETRY_AFTER_FAILURE_S
            log.exception("asynchronous verification failed for now", extra={"job_id": job.job_id})

    async def _keep_lease(self, job_id: str) -> None:
        """Renew the lease while the job runs, so that a subject waiting for hours on an agency
        that answers later does not let another broker take the job up meanwhile."""
        while True:
            await asyncio.sleep(self._lease_s / 3)
            try:
                await asyncio.to_thread(self._store.renew, job_id, self._owner, self._clock(), self._lease_s)
            except Exception:  # the database is down: the next renewal tries again
                log.warning("cannot renew the lease of job %s", job_id)

    async def run(self, job: StoredJob) -> None:
        """Decide every subject of ``job`` not recorded yet, then mark it done."""
        keeper = asyncio.create_task(self._keep_lease(job.job_id))
        try:
            await self._run(job)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _run(self, job: StoredJob) -> None:
        submission = await asyncio.to_thread(self._store.open, job)
        done = await asyncio.to_thread(self._store.decided_positions, job.job_id)
        window = min(submission.header.window or JOB_DEFAULT_WINDOW, JOB_MAX_WINDOW)
        slots = asyncio.Semaphore(window)

        async def one(position: int, item: broker_pb2.BulkSubject) -> None:
            async with slots:
                result = await self._decide(submission.header, item, job.officer_identification)
                error = result.error.SerializeToString() if result.HasField("error") else None
                await asyncio.to_thread(
                    self._store.record,
                    job.job_id,
                    position,
                    item.request_id,
                    error,
                    self._owner,
                    self._clock(),
                    self._lease_s,
                )

        pending = [(i, item) for i, item in enumerate(submission.subjects) if i not in done]
        if pending:
            log.info(
                "asynchronous verification: deciding",
                extra={"job_id": job.job_id, "subjects": len(pending), "already_decided": len(done)},
            )
        await asyncio.gather(*(one(i, item) for i, item in pending))
        await asyncio.to_thread(self._store.finish, job.job_id, self._clock())
        log.info("asynchronous verification: done", extra={"job_id": job.job_id, "subjects": job.subjects})
