"""``onceonly governance import``: a governance file becomes recorded changes under the operator's
role — shown first, then applied, revocations included — while the broker's start-up seed only
adds what is missing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import grpc
import pytest

from onceonly.broker.app import BrokerApp
from onceonly.v1 import governance_pb2, governance_pb2_grpc
from tests.broker.oversight_workload import failure_of
from tests.conftest import SEED, Platform, rpc_failure, verify_request
from tests.consumers.test_oversight_cli import command

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

SEPE_REQUEST: dict[str, Any] = {
    "organization_id": "E04990101",
    "procedure_code": "JOB-SEEKER-SUPPORT",
    "checks": (("employment.unemployment-status/v1", {}),),
    "law": "Ley 3/2023 art. 3",
}


def log_size(platform: Platform) -> int:
    with sqlite3.connect(platform.db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM governance_events").fetchone()[0])


async def decision(platform: Platform, app: BrokerApp, **request: object) -> str:
    try:
        await platform.stub(app).Verify(verify_request(**request), timeout=10)  # type: ignore[arg-type]
    except grpc.aio.AioRpcError as exc:
        failure = rpc_failure(exc)
        return failure.info.reason if failure.info is not None else failure.code.name
    return "GRANTED"


def edited(tmp_path: Path) -> Path:
    """The seed file with: the municipal master agreement and Madrid's housing agreement citing one
    more law, the SEPE agreement removed, the tax agency's veto of Barcelona's agreement removed,
    and the Data Protection Agency renamed."""
    text = SEED.read_text("utf-8")
    assert text.count('laws = ["Ley 39/2015 art. 28", "Ley 12/2023 art. 17"]') == 2
    text = text.replace(
        'laws = ["Ley 39/2015 art. 28", "Ley 12/2023 art. 17"]',
        'laws = ["Ley 39/2015 art. 28", "Ley 12/2023 art. 17", "Ley 40/2015 art. 155"]',
    )
    start = text.index('[[agreements]]\nid = "sepe-job-seeker-support"')
    end = text.index("[[agreements]]", start + 10)
    text = text[:start] + text[end:]
    start = text.index("[[vetoes]]")
    text = text[:start]
    text = text.replace('name = "Data Protection Agency"', 'name = "Spanish Data Protection Agency"')
    path = tmp_path / "governance.toml"
    path.write_text(text, "utf-8")
    return path


async def test_import_shows_then_records_every_difference(platform: Platform, tmp_path: Path) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker(agreements_seed=None)
    assert await decision(platform, app) == "UNKNOWN_CONSUMER"

    code, out, err = await command(platform, app, "governance", "import", str(SEED), "--dry-run")
    assert code == 0, err
    assert "dry run: 15 change(s) would be made; nothing was recorded" in out
    assert log_size(platform) == 0 and await decision(platform, app) == "UNKNOWN_CONSUMER"

    code, out, err = await command(platform, app, "governance", "import", str(SEED))
    assert code == 0, err
    assert "15 change(s) recorded: governance log entries 1..15" in out
    assert await decision(platform, app) == "GRANTED"
    assert await decision(platform, app, **SEPE_REQUEST) == "GRANTED"
    barcelona: dict[str, Any] = {"organization_id": "L08019030", "checks": (("tax.compliance/v1", {}),)}
    assert await decision(platform, app, **barcelona) == "PROVIDER_VETO"

    code, out, err = await command(platform, app, "governance", "import", str(SEED))
    assert code == 0 and "nothing to change" in out, out + err

    changed = edited(tmp_path)
    code, out, err = await command(platform, app, "governance", "import", str(changed), "--dry-run")
    assert code == 0, err
    lines = {tuple(line.split()[:3]) for line in out.splitlines()}
    assert {
        ("organisation", "CHANGE", "AEPD"),
        ("master", "agreement", "CHANGE"),
        ("agreement", "CHANGE", "madrid-housing-rent-subsidy"),
        ("agreement", "REVOKE", "sepe-job-seeker-support"),
        ("veto", "LIFT", "barcelona-housing-rent-subsidy/tax"),
    } <= lines, out
    code, out, err = await command(platform, app, "governance", "import", str(changed))
    assert code == 0 and "5 change(s) recorded" in out, out + err
    assert await decision(platform, app, **SEPE_REQUEST) == "PROCEDURE_NOT_AUTHORISED"
    assert await decision(platform, app, **barcelona) == "GRANTED"
    assert await decision(platform, app, law="Ley 40/2015 art. 155") == "GRANTED"

    listed = await governance_pb2_grpc.GovernanceStub(
        platform.channel(app.target, tls=platform.pki.issue("oversight", role="oversight", org="AEPD"))
    ).ListAgreements(
        governance_pb2.ListAgreementsRequest(agreement_id="madrid-housing-rent-subsidy"), timeout=5
    )
    assert [(a.version, a.state) for a in listed.agreements] == [
        (1, governance_pb2.AGREEMENT_STATE_SUPERSEDED),
        (2, governance_pb2.AGREEMENT_STATE_IN_FORCE),
    ]
    code, out, err = await command(platform, app, "governance", "log")
    assert "AGREEMENT_REVOKED" in out and "AGREEMENT_VETO_LIFTED" in out and "ORGANISATION_UPDATED" in out


async def test_only_the_operator_imports_and_a_bad_file_records_nothing(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    before = log_size(platform)
    stub = governance_pb2_grpc.GovernanceStub(platform.channel(broker.target))  # the housing office
    refused = await failure_of(
        stub.ImportGovernance(
            governance_pb2.ImportGovernanceRequest(file_text=SEED.read_text("utf-8")), timeout=5
        )
    )
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED and refused.info is not None
    assert refused.info.reason == "OPERATOR_ONLY"
    bad = tmp_path / "bad.toml"
    bad.write_text('[[agreements]]\nid = "x"\norganization = "NOWHERE"\nprocedure = "P"\n', "utf-8")
    code, out, err = await command(platform, broker, "governance", "import", str(bad))
    assert code == 2 and "bad.toml" in out + err and "agreement 'x'" in out + err, out + err
    assert "Traceback" not in out + err
    assert log_size(platform) == before


async def test_the_start_up_seed_only_adds_what_is_missing(platform: Platform, tmp_path: Path) -> None:
    """A replica started with an older file must not undo what was decided since."""
    await platform.start_reference_providers()
    first = await platform.start_broker()
    seeded = log_size(platform)
    await first.stop()
    again = await platform.start_broker(agreements_seed=edited(tmp_path))
    assert log_size(platform) == seeded, "nothing missing, nothing recorded"
    assert await decision(platform, again, **SEPE_REQUEST) == "GRANTED", "not revoked by an old file"


async def test_a_file_without_agreements_revokes_nothing(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    """An empty (or wrong) file would revoke every agreement in force at once: it is refused."""
    empty = tmp_path / "empty.toml"
    empty.write_text("# nothing here\n", "utf-8")
    before = log_size(platform)
    code, out, err = await command(platform, broker, "governance", "import", str(empty))
    assert code == 2 and "declares no agreement" in out + err, out + err
    assert log_size(platform) == before and await decision(platform, broker) == "GRANTED"
