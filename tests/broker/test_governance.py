"""Governance through the platform: member organisations registered by the operator, every change
in a hash-chained, signed governance log, nothing recorded for a refused or unloggable change."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from onceonly.broker.app import BrokerApp
from onceonly.broker.attestation import KeyRing
from onceonly.broker.auth import Principal
from onceonly.broker.domain import Organisation
from onceonly.broker.governance import GovernanceService
from onceonly.broker.governance_log import GovernanceLog, event_hash, verify_governance_log
from onceonly.broker.storage import GovernanceEventRow
from onceonly.pki import DEMO_OPERATOR
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from onceonly.vocabulary import OrganisationKind
from tests.broker.oversight_workload import failure_of
from tests.conftest import ORG, Platform
from tests.consumers.test_cli import cli

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

OPERATOR = Principal("operator", DEMO_OPERATOR[0], None, "mtls")
LABOUR = governance_pb2.Organisation(
    id="E00003301",
    name="Labour Inspectorate",
    kind=governance_pb2.ORGANISATION_KIND_CONSUMER,
    contact="dpo@inspection.example",
)


def governance_stub(platform: Platform, app: BrokerApp, as_: str = "operator") -> Any:
    tls = (
        platform.pki.consumer(ORG)
        if as_ == "consumer"
        else platform.pki.issue(as_, role=as_, org={"operator": DEMO_OPERATOR[0], "oversight": "AEPD"}[as_])
    )
    return governance_pb2_grpc.GovernanceStub(platform.channel(app.target, tls=tls))


def _counts(platform: Platform) -> tuple[int, int]:
    with sqlite3.connect(platform.db_path) as conn:
        orgs = conn.execute("SELECT count(*) FROM organisations").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM governance_events").fetchone()[0]
    return int(orgs), int(events)


async def test_the_operator_registers_an_organisation_and_the_log_says_who(
    platform: Platform, broker: BrokerApp
) -> None:
    stub = governance_stub(platform, broker)
    seeded = _counts(platform)[1]  # the seed file, recorded at the broker's start
    done = await stub.RegisterOrganisation(
        governance_pb2.RegisterOrganisationRequest(organisation=LABOUR), timeout=5
    )
    assert done.organisation == LABOUR
    assert (done.event.seq, done.event.action, done.event.subject) == (
        seeded + 1,
        "ORGANISATION_REGISTERED",
        LABOUR.id,
    )
    assert (done.event.actor.organization_id, done.event.actor.role, done.event.actor.via) == (
        "SGAD",
        "operator",
        "mtls",
    )
    assert json.loads(done.event.body_json) == {
        "name": LABOUR.name,
        "kind": "CONSUMER",
        "contact": LABOUR.contact,
    }

    # Every member reads the organisations and the log.
    reader = governance_stub(platform, broker, "consumer")
    listed = await reader.ListOrganisations(governance_pb2.ListOrganisationsRequest(), timeout=5)
    assert LABOUR in listed.organisations
    log = await reader.GetGovernanceLog(governance_pb2.GetGovernanceLogRequest(after_seq=seeded), timeout=5)
    assert [e.hash for e in log.events] == [done.event.hash]
    code, out, err = await cli("ledger", "verify", "--var-dir", str(platform.var_dir))
    assert code == 0, out + err
    assert f"governance log: {seeded + 1} entries: intact" in out


async def test_only_the_operator_registers_and_a_refusal_records_nothing(
    platform: Platform, broker: BrokerApp
) -> None:
    before = _counts(platform)
    request = governance_pb2.RegisterOrganisationRequest(organisation=LABOUR)
    for role in ("consumer", "oversight"):
        failure = await failure_of(
            governance_stub(platform, broker, role).RegisterOrganisation(request, timeout=5)
        )
        assert failure.code is grpc.StatusCode.PERMISSION_DENIED
        assert failure.info is not None and failure.info.reason == "OPERATOR_ONLY"
    assert _counts(platform) == before


async def test_bad_organisations_name_their_fields_and_record_nothing(
    platform: Platform, broker: BrokerApp
) -> None:
    stub = governance_stub(platform, broker)
    before = _counts(platform)
    bad = governance_pb2.Organisation(id="no spaces allowed", name=" ", contact="x" * 300)
    failure = await failure_of(
        stub.RegisterOrganisation(governance_pb2.RegisterOrganisationRequest(organisation=bad), timeout=5)
    )
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.fields == [
        "organisation.id",
        "organisation.name",
        "organisation.contact",
        "organisation.kind",
    ]
    await stub.RegisterOrganisation(
        governance_pb2.RegisterOrganisationRequest(organisation=LABOUR), timeout=5
    )
    again = await failure_of(
        stub.RegisterOrganisation(governance_pb2.RegisterOrganisationRequest(organisation=LABOUR), timeout=5)
    )
    assert again.code is grpc.StatusCode.ALREADY_EXISTS
    assert again.info is not None and again.info.reason == "ORGANISATION_EXISTS"
    assert _counts(platform) == (before[0] + 1, before[1] + 1)


async def test_a_change_that_cannot_be_logged_is_not_applied(engine: sa.Engine) -> None:
    def broken_signer(claims: Any) -> str:
        raise OSError("the signing key is unreadable")

    service = GovernanceService(engine, GovernanceLog(broken_signer))
    with pytest.raises(OSError):
        await service.register_organisation(
            OPERATOR, Organisation("E1", "Somewhere", OrganisationKind.CONSUMER)
        )
    assert [o.id for o in await service.organisations()] == []
    assert await service.log() == []


async def test_replicas_appending_at_once_keep_one_chain(engine: sa.Engine) -> None:
    keys = KeyRing.generate()
    services = [GovernanceService(engine, GovernanceLog(lambda c: keys.sign(c, "t"))) for _ in range(2)]
    await asyncio.gather(
        *(
            services[i % 2].register_organisation(
                OPERATOR, Organisation(f"E{i}", f"Agency {i}", OrganisationKind.CONSUMER)
            )
            for i in range(12)
        )
    )
    log = await services[0].log()
    assert [e.seq for e in log] == list(range(1, 13))
    assert sorted(e.subject for e in log) == sorted(f"E{i}" for i in range(12))
    assert verify_governance_log(engine, keys.public_keys()).intact


@pytest.mark.parametrize("tamper", ["edit", "rehash", "delete", "foreign-key"])
async def test_tampering_with_the_governance_log_is_named(engine: sa.Engine, tamper: str) -> None:
    keys, other = KeyRing.generate(), KeyRing.generate()
    service = GovernanceService(engine, GovernanceLog(lambda c: keys.sign(c, "t")))
    for i in range(3):
        await service.register_organisation(
            OPERATOR, Organisation(f"E{i}", f"Agency {i}", OrganisationKind.CONSUMER)
        )
    table = sa.table(
        "governance_events", sa.column("seq"), sa.column("body"), sa.column("hash"), sa.column("signature")
    )
    with engine.begin() as conn:
        if tamper == "delete":
            conn.execute(sa.delete(table).where(table.c.seq == 2))
        elif tamper == "foreign-key":
            forged = other.sign({"seq": 2, "hash": "x"}, "t")
            conn.execute(sa.update(table).where(table.c.seq == 2).values(signature=forged))
        else:
            conn.execute(sa.update(table).where(table.c.seq == 2).values(body='{"name": "Forged"}'))
            if tamper == "rehash":  # as someone who knows the scheme but not the broker's key
                events = GovernanceEventRow.__table__  # type: ignore[attr-defined]
                row = dict(conn.execute(sa.select(events).where(events.c.seq == 2)).mappings().one())
                conn.execute(sa.update(table).where(table.c.seq == 2).values(hash=event_hash(row)))
    report = verify_governance_log(engine, keys.public_keys())
    expected = {
        "edit": "content does not match its hash",
        "rehash": "differs from what was signed",
        "delete": "entries are missing",
        "foreign-key": "signed by unknown key",
    }[tamper]
    assert report.problems and expected in report.problems[0], report.problems
