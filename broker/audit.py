"""Audit sampling: an oversight body draws a random sample of requests; each consumer justifies its own.

A sample is reproducible: every request of the period (of one consumer, or of all) is ranked by
``SHA-256(seed ‖ trace id)`` and the ``size`` lowest are taken, so the same seed over the same
requests always draws the same sample, whatever order the database returns them in, and anyone
holding the seed and the trace ids can check the draw. Each sampled request becomes a task for
the consumer that made it, with a deadline: ``OPEN`` → ``JUSTIFIED`` when answered, or ``OVERDUE``
once the deadline passes unanswered (an overdue task may still be answered; the answer is marked
late). The draw, each answer and each task found overdue are entries of the governance log, signed
and hash-chained with every other governance change.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import heapq
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from onceonly.broker.auth import Principal
from onceonly.broker.errors import FieldViolation, InvalidRequest
from onceonly.broker.governance import actor_of, witness_governance_head
from onceonly.broker.governance_log import Actor, GovernanceLog, in_logged_transaction
from onceonly.broker.ledger import trace_from_row
from onceonly.broker.oversight import REPORT_PROCEDURE, Scope, own_data_only
from onceonly.broker.storage import AuditSampleRow, AuditTaskRow, TraceRow
from onceonly.broker.traces import TraceEntry
from onceonly.broker.witness import WitnessLog
from onceonly.errors import FailedPrecondition, NotFound, permission_denied, role_words
from onceonly.validation import CONTROL, FieldErrors

__all__ = [
    "AUDIT_SAMPLE_DRAWN",
    "AUDIT_TASKS_OVERDUE",
    "AUDIT_TASK_JUSTIFIED",
    "AuditSample",
    "AuditSampling",
    "AuditTask",
    "SampleRequest",
    "TaskState",
    "rank",
]

AUDIT_SAMPLE_DRAWN = "AUDIT_SAMPLE_DRAWN"
AUDIT_TASK_JUSTIFIED = "AUDIT_TASK_JUSTIFIED"
AUDIT_TASKS_OVERDUE = "AUDIT_TASKS_OVERDUE"
OVERDUE_ACTOR = Actor("onceonly", "platform", "deadline")
"""Who marks a task overdue: the platform itself, when a deadline is found passed."""

T = TypeVar("T")

MAX_SAMPLE = 1000
DEFAULT_DAYS = 15
MAX_DAYS = 365
MAX_JUSTIFICATION = 2000
DEFAULT_PAGE = 100
MAX_PAGE = 500

_SAMPLES: sa.Table = AuditSampleRow.__table__  # type: ignore[attr-defined]
_TASKS: sa.Table = AuditTaskRow.__table__  # type: ignore[attr-defined]
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]


class TaskState:
    OPEN = "OPEN"
    JUSTIFIED = "JUSTIFIED"
    OVERDUE = "OVERDUE"
    ALL = ("OPEN", "JUSTIFIED", "OVERDUE")


@dataclass(frozen=True, slots=True)
class SampleRequest:
    consumer_organization_id: str
    since: dt.datetime
    until: dt.datetime
    size: int
    seed: str
    days_to_answer: int


@dataclass(frozen=True, slots=True)
class AuditTask:
    task_id: str
    sample_id: str
    consumer_organization_id: str
    trace: TraceEntry | None
    """``None`` once retention has purged the sampled trace."""
    state: str
    deadline: dt.datetime
    justification: str = ""
    answered_by: str = ""
    answered_at: dt.datetime | None = None

    @property
    def late(self) -> bool:
        return self.answered_at is not None and self.answered_at > self.deadline


@dataclass(frozen=True, slots=True)
class AuditSample:
    sample_id: str
    drawn_at: dt.datetime
    drawn_by: str
    consumer_organization_id: str
    since: dt.datetime
    until: dt.datetime
    seed: str
    population: int
    tasks: tuple[AuditTask, ...]


def rank(seed: str, trace_id: str) -> bytes:
    """A request's place in the draw of ``seed``: the lowest are sampled."""
    return hashlib.sha256(seed.encode() + b"\x00" + trace_id.encode()).digest()


def validated_sample(
    consumer: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    size: int,
    seed: str,
    days_to_answer: int,
) -> SampleRequest:
    """A :class:`SampleRequest` from request fields, or ``InvalidRequest`` naming each bad one."""
    bad = FieldErrors()
    consumer = bad.text("consumer_organization_id", consumer, max_len=64, required=False)
    if since is None:
        bad.add("since", "is required")
    if until is None:
        bad.add("until", "is required")
    if since is not None and until is not None and since >= until:
        bad.add("until", "must be later than since")
    if not 1 <= size <= MAX_SAMPLE:
        bad.add("size", f"must be from 1 to {MAX_SAMPLE}")
    seed = seed.strip()
    if len(seed) > 64 or CONTROL.search(seed):
        bad.add("seed", "must be at most 64 printable characters")
    days = days_to_answer or DEFAULT_DAYS
    if not 1 <= days <= MAX_DAYS:
        bad.add("days_to_answer", f"must be from 1 to {MAX_DAYS}")
    bad.raise_if_any()
    assert since is not None and until is not None
    return SampleRequest(consumer, since, until, size, seed or secrets.token_hex(8), days)


def _entry(m: Any) -> TraceEntry | None:
    if m["t_trace_id"] is None:
        return None
    values = {c.name: m[f"t_{c.name}"] for c in _TRACES.columns}
    return TraceEntry(trace_from_row(values), values["chain_id"], int(values["seq"]), int(values["id"]))


def _task(m: Any) -> AuditTask:
    return AuditTask(
        task_id=m["task_id"],
        sample_id=m["sample_id"],
        consumer_organization_id=m["consumer_organization_id"],
        trace=_entry(m),
        state=m["state"],
        deadline=m["deadline"],
        justification=m["justification"],
        answered_by=m["answered_by"],
        answered_at=m["answered_at"],
    )


def _task_query() -> sa.Select[Any]:
    traced = [c.label(f"t_{c.name}") for c in _TRACES.columns]
    return (
        sa.select(_TASKS, *traced)
        .select_from(_TASKS.outerjoin(_TRACES, _TRACES.c.trace_id == _TASKS.c.trace_id))
        .join(_SAMPLES, _SAMPLES.c.sample_id == _TASKS.c.sample_id)
    )


class AuditSampling:
    """Draws samples, lists tasks and records answers; every step in the governance log."""

    def __init__(
        self,
        engine: sa.Engine,
        governance_log: GovernanceLog,
        *,
        witness: WitnessLog | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._engine = engine
        self._log = governance_log
        self._witness = witness
        self._clock = clock

    async def draw(self, principal: Principal, request: SampleRequest) -> AuditSample:
        """Draw a sample (oversight only) and open a task per sampled request."""
        if principal.kind != "oversight":
            raise permission_denied(
                "OVERSIGHT_ONLY",
                "rule OVERSIGHT_ONLY: only an oversight body draws audit samples, "
                f"not {role_words(principal.kind)}",
                role=principal.kind,
            )
        population, chosen = await asyncio.to_thread(self._choose, request)
        if not chosen:
            who = request.consumer_organization_id or "any consumer"
            raise FailedPrecondition(
                f"no request of {who} was traced from {request.since.isoformat()} to "
                f"{request.until.isoformat()}: there is nothing to sample",
                reason="NOTHING_TO_SAMPLE",
            )
        now = self._clock()
        sample_id = f"sample-{uuid.uuid4().hex[:16]}"
        deadline = now + dt.timedelta(days=request.days_to_answer)

        def work(conn: sa.Connection) -> None:
            conn.execute(
                sa.insert(_SAMPLES),
                {
                    "sample_id": sample_id,
                    "drawn_at": now,
                    "drawn_by": principal.organization_id,
                    "consumer_organization_id": request.consumer_organization_id,
                    "since": request.since,
                    "until": request.until,
                    "size": request.size,
                    "seed": request.seed,
                    "population": population,
                },
            )
            conn.execute(
                sa.insert(_TASKS),
                [
                    {
                        "task_id": f"task-{uuid.uuid4().hex[:16]}",
                        "sample_id": sample_id,
                        "trace_id": trace_id,
                        "consumer_organization_id": consumer,
                        "state": TaskState.OPEN,
                        "deadline": deadline,
                        "justification": "",
                        "answered_by": "",
                        "answered_at": None,
                    }
                    for trace_id, consumer in chosen
                ],
            )
            self._log.append(
                conn,
                actor_of(principal),
                AUDIT_SAMPLE_DRAWN,
                sample_id,
                {
                    "consumer_organization_id": request.consumer_organization_id,
                    "since": request.since.isoformat(),
                    "until": request.until.isoformat(),
                    "size": request.size,
                    "seed": request.seed,
                    "population": population,
                    "deadline": deadline.isoformat(),
                    "trace_ids": [trace_id for trace_id, _ in chosen],
                },
                now,
            )

        await self._commit(work)
        tasks = await self.tasks(Scope(), sample_id=sample_id, page_size=MAX_SAMPLE)
        return AuditSample(
            sample_id,
            now,
            principal.organization_id,
            request.consumer_organization_id,
            request.since,
            request.until,
            request.seed,
            population,
            tuple(tasks),
        )

    def _choose(self, request: SampleRequest) -> tuple[int, list[tuple[str, str]]]:
        t = _TRACES.c
        query = sa.select(t.trace_id, t.consumer_organization_id).where(
            t.created_at >= request.since,
            t.created_at < request.until,
            t.procedure_code != REPORT_PROCEDURE,  # an oversight body's own lookups are not sampled
        )
        if request.consumer_organization_id:
            query = query.where(t.consumer_organization_id == request.consumer_organization_id)
        population = 0

        def ranked() -> Any:
            nonlocal population
            with self._engine.connect() as conn:
                for trace_id, consumer in conn.execution_options(stream_results=True, yield_per=2000).execute(
                    query
                ):
                    population += 1
                    yield rank(request.seed, trace_id), trace_id, consumer

        chosen = heapq.nsmallest(request.size, ranked())
        return population, [(trace_id, consumer) for _, trace_id, consumer in chosen]

    async def tasks(
        self,
        scope: Scope,
        *,
        sample_id: str = "",
        consumer_organization_id: str = "",
        state: str = "",
        page_size: int = 0,
    ) -> list[AuditTask]:
        """Tasks within ``scope`` (a consumer's administrators: their own), newest sample first;
        tasks whose deadline has passed unanswered become OVERDUE first."""
        refusal = own_data_only(scope, "", consumer_organization_id)
        if refusal is not None:
            raise refusal
        if scope.provider_id is not None:
            raise permission_denied(
                "OVERSIGHT_ONLY", "rule OVERSIGHT_ONLY: a provider has no audit tasks", role="provider"
            )
        if state and state not in TaskState.ALL:
            raise InvalidRequest([FieldViolation("state", f"must be one of {', '.join(TaskState.ALL)}")])
        await self.mark_overdue()
        consumer = scope.consumer_id or consumer_organization_id
        query = _task_query()
        if sample_id:
            query = query.where(_TASKS.c.sample_id == sample_id)
        if consumer:
            query = query.where(_TASKS.c.consumer_organization_id == consumer)
        if state:
            query = query.where(_TASKS.c.state == state)
        size = min(page_size or DEFAULT_PAGE, MAX_SAMPLE if sample_id else MAX_PAGE)
        query = query.order_by(_SAMPLES.c.drawn_at.desc(), _TASKS.c.deadline, _TASKS.c.task_id).limit(size)

        def read() -> list[AuditTask]:
            with self._engine.connect() as conn:
                return [_task(r._mapping) for r in conn.execute(query)]

        return await asyncio.to_thread(read)

    async def mark_overdue(self) -> int:
        """Make every OPEN task past its deadline OVERDUE, logged; how many were."""
        now = self._clock()
        late = (_TASKS.c.state == TaskState.OPEN) & (_TASKS.c.deadline < now)

        def any_late() -> bool:
            with self._engine.connect() as conn:
                return conn.execute(sa.select(_TASKS.c.task_id).where(late).limit(1)).first() is not None

        if not await asyncio.to_thread(any_late):
            return 0

        def work(conn: sa.Connection) -> int:
            rows = conn.execute(
                sa.select(_TASKS.c.task_id, _TASKS.c.sample_id, _TASKS.c.consumer_organization_id)
                .where(late)
                .order_by(_TASKS.c.task_id)
            ).all()
            if not rows:
                return 0
            conn.execute(
                sa.update(_TASKS)
                .where(_TASKS.c.task_id.in_([r[0] for r in rows]), _TASKS.c.state == TaskState.OPEN)
                .values(state=TaskState.OVERDUE)
            )
            self._log.append(
                conn,
                OVERDUE_ACTOR,
                AUDIT_TASKS_OVERDUE,
                ",".join(sorted({r[1] for r in rows})),
                {"tasks": [{"task_id": r[0], "consumer_organization_id": r[2]} for r in rows]},
                now,
            )
            return len(rows)

        return await self._commit(work)

    async def justify(self, principal: Principal, task_id: str, justification: str) -> AuditTask:
        """Answer a task of the principal's own organisation (consumer administrators only)."""
        bad = FieldErrors()
        task_id = bad.text("task_id", task_id, max_len=64)
        text = justification.replace("\r\n", "\n").strip()
        if not text:
            bad.add("justification", "is required")
        elif len(text) > MAX_JUSTIFICATION:
            bad.add("justification", f"is longer than {MAX_JUSTIFICATION} characters")
        elif CONTROL.search(text.replace("\n", " ")):
            bad.add("justification", "contains control characters")
        bad.no_identifiers("justification", text, passports=True)
        bad.raise_if_any()
        if principal.kind != "consumer-admin":
            raise permission_denied(
                "CONSUMER_ADMIN_ONLY",
                "rule CONSUMER_ADMIN_ONLY: a task is answered by the administrators of the consumer "
                f"that made the request, not by {role_words(principal.kind)}",
                role=principal.kind,
            )
        await self.mark_overdue()
        now = self._clock()
        who = principal.organization_id + (f"/{principal.officer_id}" if principal.officer_id else "")

        def work(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(_TASKS).where(_TASKS.c.task_id == task_id)).first()
            if row is None or row.consumer_organization_id != principal.organization_id:
                # Another organisation's task is as unknown as a task that does not exist.
                raise NotFound(
                    f"no audit task {task_id!r} for {principal.organization_id}",
                    resource_type="audit task",
                    resource_name=task_id,
                    field="task_id",
                    description="no such task of this organisation",
                )
            if row.state == TaskState.JUSTIFIED:
                raise FailedPrecondition(
                    f"audit task {task_id!r} was justified already (at {row.answered_at.isoformat()})",
                    reason="TASK_ANSWERED",
                )
            conn.execute(
                sa.update(_TASKS)
                .where(_TASKS.c.task_id == task_id)
                .values(state=TaskState.JUSTIFIED, justification=text, answered_by=who, answered_at=now)
            )
            self._log.append(
                conn,
                actor_of(principal),
                AUDIT_TASK_JUSTIFIED,
                task_id,
                {
                    "sample_id": row.sample_id,
                    "trace_id": row.trace_id,
                    "justification": text,
                    "answered_by": who,
                    "late": now > row.deadline,
                },
                now,
            )

        await self._commit(work)

        def read() -> AuditTask:
            with self._engine.connect() as conn:
                return _task(conn.execute(_task_query().where(_TASKS.c.task_id == task_id)).one()._mapping)

        return await asyncio.to_thread(read)

    async def _commit(self, work: Callable[[sa.Connection], T]) -> T:
        done = await asyncio.to_thread(in_logged_transaction, self._engine, work)
        await asyncio.to_thread(witness_governance_head, self._engine, self._witness)
        return done
