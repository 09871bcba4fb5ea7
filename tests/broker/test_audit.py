"""Audit sampling: an oversight body draws a reproducible random sample of requests, and each
consumer's administrators justify their own, before a deadline or late — every step in the
governance log."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import timestamp_pb2

from onceonly.broker.app import BrokerApp
from onceonly.broker.audit import rank
from onceonly.v1 import governance_pb2, governance_pb2_grpc, oversight_pb2, oversight_pb2_grpc
from tests.broker.test_auth import failure_of
from tests.broker.test_oversight_scopes import BARCELONA, reader
from tests.conftest import ORG, Platform, verify_request

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
D = oversight_pb2


def stamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    s = timestamp_pb2.Timestamp()
    s.FromDatetime(value)
    return s


def period() -> tuple[timestamp_pb2.Timestamp, timestamp_pb2.Timestamp]:
    now = dt.datetime.now(dt.UTC)
    return stamp(now - dt.timedelta(hours=1)), stamp(now + dt.timedelta(minutes=5))


async def governance_actions(platform: Platform, broker: BrokerApp) -> list[tuple[str, str, dict[str, Any]]]:
    stub = governance_pb2_grpc.GovernanceStub(
        platform.channel(broker.target, tls=platform.pki.issue("auditor", role="oversight", org="AEPD"))
    )
    log = await stub.GetGovernanceLog(governance_pb2.GetGovernanceLogRequest(), timeout=5)
    return [(e.action, e.subject, json.loads(e.body_json)) for e in log.events]


async def made_requests(platform: Platform, broker: BrokerApp, count: int) -> list[str]:
    stub = platform.stub(broker)
    return [(await stub.Verify(verify_request(), timeout=10)).trace_id for _ in range(count)]


async def test_a_sample_is_reproducible_and_drawn_by_rank(platform: Platform, broker: BrokerApp) -> None:
    madrid = await made_requests(platform, broker, 7)
    with pytest.raises(grpc.aio.AioRpcError):  # Barcelona's denial is a request too
        await platform.stub(broker).Verify(
            verify_request(organization_id=BARCELONA, checks=(("tax.compliance/v1", {}),)), timeout=10
        )
    oversight = reader(platform, broker, "auditor", "oversight", "AEPD")
    since, until = period()
    first = await oversight.DrawAuditSample(
        D.DrawAuditSampleRequest(consumer_organization_id=ORG, since=since, until=until, size=3, seed="s-1"),
        timeout=10,
    )
    assert first.population == 7 and first.seed == "s-1" and first.drawn_by == "AEPD"
    drawn = {t.trace.trace_id for t in first.tasks}
    assert drawn == set(sorted(madrid, key=lambda t: rank("s-1", t))[:3]), "the three lowest ranks"
    assert {t.state for t in first.tasks} == {D.AUDIT_TASK_STATE_OPEN}
    assert {t.consumer_organization_id for t in first.tasks} == {ORG}
    deadline = first.tasks[0].deadline.ToDatetime(tzinfo=dt.UTC)
    assert dt.timedelta(days=14, hours=23) < deadline - dt.datetime.now(dt.UTC) <= dt.timedelta(days=15)

    again = await oversight.DrawAuditSample(
        D.DrawAuditSampleRequest(consumer_organization_id=ORG, since=since, until=until, size=3, seed="s-1"),
        timeout=10,
    )
    assert {t.trace.trace_id for t in again.tasks} == drawn and again.sample_id != first.sample_id

    everyone = await oversight.DrawAuditSample(
        D.DrawAuditSampleRequest(since=since, until=until, size=100), timeout=10
    )
    assert everyone.population == 8 and len(everyone.tasks) == 8 and len(everyone.seed) == 16
    assert {t.consumer_organization_id for t in everyone.tasks} == {ORG, BARCELONA}

    drawn_events = [
        b for action, _, b in await governance_actions(platform, broker) if action == "AUDIT_SAMPLE_DRAWN"
    ]
    assert len(drawn_events) == 3
    assert sorted(drawn_events[0]["trace_ids"]) == sorted(drawn) and drawn_events[0]["seed"] == "s-1"


async def test_bad_draws_name_the_field_and_only_oversight_draws(
    platform: Platform, broker: BrokerApp
) -> None:
    oversight = reader(platform, broker, "auditor", "oversight", "AEPD")
    since, until = period()
    bad = await failure_of(
        oversight.DrawAuditSample(D.DrawAuditSampleRequest(since=until, until=since, size=0), timeout=5)
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.bad_request is not None
    assert {v.field for v in bad.bad_request.field_violations} == {"until", "size"}
    missing = await failure_of(oversight.DrawAuditSample(D.DrawAuditSampleRequest(size=5), timeout=5))
    assert missing.bad_request is not None
    assert {v.field for v in missing.bad_request.field_violations} == {"since", "until"}
    empty = await failure_of(
        oversight.DrawAuditSample(D.DrawAuditSampleRequest(since=since, until=until, size=5), timeout=5)
    )
    assert empty.code == grpc.StatusCode.FAILED_PRECONDITION and empty.info is not None
    assert empty.info.reason == "NOTHING_TO_SAMPLE"

    admin = reader(platform, broker, "housing-admin", "consumer-admin", ORG)
    refused = await failure_of(
        admin.DrawAuditSample(D.DrawAuditSampleRequest(since=since, until=until, size=5), timeout=5)
    )
    assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    assert refused.info is not None and refused.info.reason == "OVERSIGHT_ONLY"
    assert [a for a, _, _ in await governance_actions(platform, broker) if a.startswith("AUDIT")] == []


async def test_consumers_justify_their_own_tasks_on_time_or_late(
    platform: Platform, broker: BrokerApp
) -> None:
    await made_requests(platform, broker, 2)
    with pytest.raises(grpc.aio.AioRpcError):
        await platform.stub(broker).Verify(
            verify_request(organization_id=BARCELONA, checks=(("tax.compliance/v1", {}),)), timeout=10
        )
    oversight = reader(platform, broker, "auditor", "oversight", "AEPD")
    since, until = period()
    sample = await oversight.DrawAuditSample(
        D.DrawAuditSampleRequest(since=since, until=until, size=10, days_to_answer=3), timeout=10
    )
    madrid = reader(platform, broker, "housing-admin", "consumer-admin", ORG)
    barcelona = reader(platform, broker, "bcn-admin", "consumer-admin", BARCELONA)

    own = (await madrid.ListAuditTasks(D.ListAuditTasksRequest(), timeout=5)).tasks
    assert len(own) == 2 and {t.consumer_organization_id for t in own} == {ORG}
    assert all(t.trace.purpose.purpose_text == "Rent subsidy application" for t in own)
    other = await failure_of(
        barcelona.ListAuditTasks(D.ListAuditTasksRequest(consumer_organization_id=ORG), timeout=5)
    )
    assert other.info is not None and other.info.reason == "CONSUMER_OWN_DATA_ONLY"
    provider = reader(platform, broker, "tax-admin", "provider-admin", "tax")
    refused = await failure_of(provider.ListAuditTasks(D.ListAuditTasksRequest(), timeout=5))
    assert refused.info is not None and refused.info.reason == "OVERSIGHT_ONLY"

    first, second = own
    stolen = await failure_of(
        barcelona.JustifyAuditTask(
            D.JustifyAuditTaskRequest(task_id=first.task_id, justification="Not ours to answer"), timeout=5
        )
    )
    assert stolen.code == grpc.StatusCode.NOT_FOUND
    named = await failure_of(
        madrid.JustifyAuditTask(
            D.JustifyAuditTaskRequest(task_id=first.task_id, justification="Applicant 12345678Z"), timeout=5
        )
    )
    assert named.bad_request is not None
    assert [v.field for v in named.bad_request.field_violations] == ["justification"]
    application = platform.channel(broker.target)  # the consumer's application, not its administrators
    not_admin = await failure_of(
        oversight_pb2_grpc.OversightStub(application).JustifyAuditTask(
            D.JustifyAuditTaskRequest(task_id=first.task_id, justification="Case EXP-2026-0001"), timeout=5
        )
    )
    assert not_admin.info is not None and not_admin.info.reason == "CONSUMER_ADMIN_ONLY"

    answered = await madrid.JustifyAuditTask(
        D.JustifyAuditTaskRequest(
            task_id=first.task_id, justification="Case EXP-2026-0001: rent subsidy\r\napplication of May"
        ),
        timeout=5,
    )
    assert answered.state == D.AUDIT_TASK_STATE_JUSTIFIED and not answered.late
    assert answered.justification == "Case EXP-2026-0001: rent subsidy\napplication of May"
    assert answered.answered_by == ORG  # a certificate names the organisation; a token, its officer too
    twice = await failure_of(
        madrid.JustifyAuditTask(
            D.JustifyAuditTaskRequest(task_id=first.task_id, justification="again"), timeout=5
        )
    )
    assert twice.info is not None and twice.info.reason == "TASK_ANSWERED"

    # Time passes: the deadline of the unanswered tasks is behind us.
    with broker.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE audit_tasks SET deadline = :past WHERE state = 'OPEN'"),
            {"past": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)},
        )
    states = {
        t.task_id: t.state
        for t in (
            await oversight.ListAuditTasks(D.ListAuditTasksRequest(sample_id=sample.sample_id), timeout=5)
        ).tasks
    }
    assert states[first.task_id] == D.AUDIT_TASK_STATE_JUSTIFIED
    assert states[second.task_id] == D.AUDIT_TASK_STATE_OVERDUE
    overdue = await oversight.ListAuditTasks(
        D.ListAuditTasksRequest(state=D.AUDIT_TASK_STATE_OVERDUE), timeout=5
    )
    assert {t.consumer_organization_id for t in overdue.tasks} == {ORG, BARCELONA}

    late = await madrid.JustifyAuditTask(
        D.JustifyAuditTaskRequest(task_id=second.task_id, justification="Case EXP-2026-0001, answered late"),
        timeout=5,
    )
    assert late.state == D.AUDIT_TASK_STATE_JUSTIFIED and late.late

    actions = [(a, s, b) for a, s, b in await governance_actions(platform, broker) if a.startswith("AUDIT")]
    assert [a for a, _, _ in actions] == [
        "AUDIT_SAMPLE_DRAWN",
        "AUDIT_TASK_JUSTIFIED",
        "AUDIT_TASKS_OVERDUE",
        "AUDIT_TASK_JUSTIFIED",
    ]
    assert {t["task_id"] for t in actions[2][2]["tasks"]} == {
        t for t, s in states.items() if s == D.AUDIT_TASK_STATE_OVERDUE
    }
    assert actions[3][2]["late"] is True and actions[1][2]["late"] is False
