"""``onceonly oversight traces|usage|resident`` as a person runs them: subprocesses against a broker."""

from __future__ import annotations

import asyncio
import json
import os

from onceonly.broker.app import BrokerApp
from onceonly.consumers.cli import build_parser
from onceonly.consumers.oversight_cli import connect
from onceonly.processes import onceonly_argv
from tests.broker.oversight_workload import MADRID, SEPE, SEPE_OFFICER, Workload, run_workload
from tests.conftest import Platform, cli_credentials_env, session_pki

EXIT_OK, EXIT_INVALID, EXIT_DENIED = 0, 2, 3


def _env(platform: Platform, *, consumer: bool = False) -> dict[str, str]:
    """The oversight body's credentials by default (``--tls-dir`` only); a consumer's if asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_LOG_FORMAT"] = "text"
    env["ONCEONLY_TLS_DIR"] = str(platform.pki.dir)
    if consumer:
        env.update(cli_credentials_env())
    return env


async def command(
    platform: Platform, app: BrokerApp, name: str, *args: str, consumer: bool = False
) -> tuple[int, str, str]:
    """Run ``onceonly NAME ARGS --broker TARGET`` with ``--tls-dir`` credentials; (code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        name,
        *args,
        "--broker",
        app.target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(platform, consumer=consumer),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def oversight(
    platform: Platform, app: BrokerApp, *args: str, consumer: bool = False
) -> tuple[int, str, str]:
    """Run ``onceonly oversight ARGS --broker TARGET``; (exit code, stdout, stderr)."""
    return await command(platform, app, "oversight", *args, consumer=consumer)


def _names(w: Workload, traces: list[dict[str, object]]) -> list[str]:
    return w.names([str(t["trace_id"]) for t in traces])


async def test_traces_command_filters_follows_pages_and_prints_a_table(platform: Platform) -> None:
    app, w = await run_workload(platform)

    code, out, err = await oversight(platform, app, "traces", "--json", "--limit", "100")
    assert code == EXIT_OK, err
    listed = json.loads(out)
    assert _names(w, listed) == ["b-down", "b-housing", "a-denied", "a-emergency", "a-jobs", "a-housing"]
    assert listed[0]["checks"][0].keys() == {"certificate_type_id", "provider_id", "status", "latency_ms"}
    assert "subject_ref" not in listed[0]

    code, out, err = await oversight(
        platform, app, "traces", "--provider", "employment", "--outcome", "unavailable", "--json"
    )
    assert code == EXIT_OK, err
    assert _names(w, json.loads(out)) == ["b-down"]
    code, out, err = await oversight(
        platform, app, "traces", "--legal-basis", "consent", "--consumer", MADRID, "--json"
    )
    assert _names(w, json.loads(out)) == ["a-emergency"]
    code, out, err = await oversight(
        platform,
        app,
        "traces",
        "--since",
        listed[3]["created_at"],
        "--until",
        listed[1]["created_at"],
        "--json",
    )
    assert _names(w, json.loads(out)) == ["a-denied", "a-emergency"]
    # --limit stops after N traces, across pages.
    code, out, err = await oversight(platform, app, "traces", "--limit", "3", "--json")
    assert _names(w, json.loads(out)) == ["b-down", "b-housing", "a-denied"]

    code, out, err = await oversight(platform, app, "traces", "--officer", SEPE_OFFICER)
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "consumer"]
    assert SEPE in lines[2] and "JOB-SEEKER-SUPPORT" in lines[2] and "GRANTED" in lines[2]
    assert "employment.unemployment-status/v1=VERIFIED" in lines[2]
    assert lines[-1] == "1 trace(s)"


async def test_usage_command(platform: Platform) -> None:
    app, _ = await run_workload(platform)

    code, out, err = await oversight(platform, app, "usage", "--by", "provider", "--json")
    assert code == EXIT_OK, err
    usage = json.loads(out)
    assert usage["group_by"] == "PROVIDER" and usage["traces_scanned"] == 6
    rows = {r["key"]: r for r in usage["rows"]}
    assert sorted(rows) == ["employment", "registry", "tax"]
    assert (rows["employment"]["total"], rows["employment"]["counts"]) == (
        5,
        {"UNAVAILABLE": 1, "VERIFIED": 4},
    )
    assert rows["tax"]["latency_p50_ms"] <= rows["tax"]["latency_p90_ms"] <= rows["tax"]["latency_p99_ms"]

    code, out, err = await oversight(platform, app, "usage", "--by", "consumer")
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split() == [
        "consumer",
        "total",
        "requests",
        "checks",
        "p50",
        "ms",
        "p90",
        "ms",
        "p99",
        "ms",
    ]
    (madrid,) = [line for line in lines if line.startswith(MADRID)]
    assert madrid.split()[1] == "4" and madrid.split()[2] == "GRANTED=4", "requests apart from checks"

    code, out, err = await oversight(platform, app, "usage", "--by", "consumer", "--cert", "tax", "--json")
    assert code == EXIT_OK, err
    seen = {r["key"]: r for r in json.loads(out)["rows"]}
    assert set(seen) == {MADRID}, "a provider sees who used its data"
    assert set(seen[MADRID]["checks_by_status"]) <= {
        "VERIFIED",
        "NOT_VERIFIED",
        "SUBJECT_NOT_FOUND",
        "TIMEOUT",
    }
    assert seen[MADRID]["requests_by_decision"] == {} and seen[MADRID]["total"] == sum(
        seen[MADRID]["checks_by_status"].values()
    ), "its own checks, which add up"
    assert lines[-1] == "6 trace(s) scanned"

    code, out, err = await oversight(platform, app, "usage", "--by", "officer")
    assert code == EXIT_INVALID
    assert "invalid choice" in err


async def test_resident_command_shows_who_consulted_and_is_traced(platform: Platform) -> None:
    app, w = await run_workload(platform)
    subject = f"DNI:{w.a.document_number}"

    code, out, err = await oversight(
        platform,
        app,
        "resident",
        subject,
        "--purpose",
        "Complaint 2026/17",
        "--law",
        "RGPD art. 58",
        "--json",
    )
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert w.names([a["trace_id"] for a in report["accesses"]]) == [
        "a-denied",
        "a-emergency",
        "a-jobs",
        "a-housing",
    ]
    assert report["accesses"][-1]["consumer_organization_name"] == "Madrid — Housing Office"
    (lookup,) = platform.trace_rows(trace_id=report["report_trace_id"])
    assert (lookup["purpose_text"], lookup["legal_basis_reference"]) == ("Complaint 2026/17", "RGPD art. 58")

    code, out, err = await oversight(
        platform, app, "resident", subject, "--purpose", "Follow-up", "--consent", "CONSENT-99"
    )
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "who"]
    assert "OVERSIGHT-RESIDENT-REPORT" in lines[2] and "Complaint 2026/17" in lines[2]
    assert any("Public Employment Service" in line and "JOB-SEEKER-SUPPORT" in line for line in lines)
    assert any("DENIED (PROVIDER_VETO)" in line for line in lines)
    assert lines[-1].startswith("5 access(es); this lookup is recorded as trace ")
    assert len(platform.trace_rows(subject_ref=lookup["subject_ref"])) == 6

    code, out, err = await oversight(
        platform, app, "resident", "DNI:12345678A", "--purpose", "x", "--law", "y"
    )
    assert code == EXIT_INVALID
    assert "subject.document_number" in err


async def test_consumer_credentials_are_refused(platform: Platform) -> None:
    app, _ = await run_workload(platform)

    code, out, err = await oversight(platform, app, "traces", consumer=True)

    assert code == EXIT_DENIED
    assert "OVERSIGHT_ONLY" in err
    assert out == ""


async def test_options_go_before_or_after_the_subcommand_and_default_to_the_oversight_certificate() -> None:
    before = build_parser().parse_args(["oversight", "--cert", "tax", "--json", "traces", "--limit", "5"])
    after = build_parser().parse_args(["oversight", "traces", "--cert", "tax", "--json"])
    both = build_parser().parse_args(
        ["oversight", "--cert", "tax", "usage", "--by", "PROVIDER", "--cert", "x"]
    )
    assert (before.cert, before.json, before.limit, after.cert, after.json) == ("tax", True, 5, "tax", True)
    assert (both.cert, both.by) == ("x", "provider")

    args = build_parser().parse_args(
        ["oversight", "--tls-dir", str(session_pki().dir), "usage", "--by", "consumer"]
    )
    args.cert = args.token = None
    client = connect(args)
    assert args.cert == "oversight"
    insecure = build_parser().parse_args(["oversight", "traces", "--insecure"])
    insecure.cert = insecure.token = None
    local = connect(insecure)
    assert ("x-onceonly-role", "oversight") in (local._metadata or ())
    await client.close()
    await local.close()
