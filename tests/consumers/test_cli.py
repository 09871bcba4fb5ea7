"""The ``onceonly`` CLI as a person runs it: a subprocess against a broker on loopback.

The broker runs in the test's event loop, so the CLI is started with
``asyncio.create_subprocess_exec`` (a blocking ``subprocess.run`` would stall the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from onceonly.broker.app import BrokerApp
from onceonly.consumers.client import Subject
from onceonly.pki import init_pki
from onceonly.processes import onceonly_argv
from onceonly.providers import synthetic
from tests.conftest import (
    HOUSING_CHECKS,
    LAW,
    ORG,
    PROCEDURE,
    TAX_COMPLIANCE,
    UNEMPLOYMENT,
    Platform,
    broker_channel,
    cli_credentials_env,
    expected_housing_claims,
    free_port,
    health_stub,
    provider_tls_args,
    resident,
    verify_kwargs,
)

EXIT_OK, EXIT_INVALID, EXIT_DENIED, EXIT_UNAVAILABLE = 0, 2, 3, 4


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_LOG_FORMAT"] = "text"
    env.update(cli_credentials_env())  # the housing office's client certificate
    return env


async def cli(*args: str, timeout: float = 30, credentials: bool = True) -> tuple[int, str, str]:
    """Run ``onceonly ARGS`` (with the housing office's certificate in the environment, unless not
    ``credentials``); return (exit code, stdout, stderr)."""
    env = _env()
    if not credentials:
        env = {k: v for k, v in env.items() if not k.startswith("ONCEONLY_TLS_")}
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def verify_args(target: str, subject: str, *extra: str, procedure: str = PROCEDURE) -> list[str]:
    checks = []
    for cid, params in HOUSING_CHECKS:
        spec = cid + (":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
        checks += ["--check", spec]
    return [
        "verify",
        "--broker",
        target,
        "--org",
        ORG,
        "--unit",
        "Housing subsidies",
        "--officer",
        "officer-17",
        "--procedure",
        procedure,
        "--purpose",
        "Rent subsidy application",
        "--case-file",
        "EXP-2026-0042",
        "--law",
        LAW,
        "--subject",
        subject,
        *checks,
        *extra,
    ]


async def test_catalog_and_jwks(broker: BrokerApp) -> None:
    (code, table, _), (json_code, text, _), (jwks_code, jwks_text, _) = await asyncio.gather(
        cli("catalog", "--broker", broker.target),
        cli("catalog", "--broker", broker.target, "--json"),
        cli("jwks", "--broker", broker.target, "--json"),
    )

    assert code == EXIT_OK
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["certificate", "type"]
    assert any(line.startswith("tax.income-below-threshold/v1") and "threshold_eur" in line for line in lines)
    # Only LAW for that type, and none of the housing office's agreements allows it ("-").
    assert any(
        line.startswith("employment.social-security-compliance/v1") and line.split()[-2:] == ["LAW", "-"]
        for line in lines
    )
    assert any(
        line.startswith("registry.residence/v1") and "HOUSING-RENT-SUBSIDY (LAW/CONSENT" in line
        for line in lines
    )

    assert json_code == EXIT_OK
    catalog = json.loads(text)
    ids = {c["id"] for c in catalog["certificateTypes"]}
    assert {cid for cid, _ in HOUSING_CHECKS} <= ids
    assert {p["id"] for p in catalog["providers"]} == {"registry", "tax", "employment"}

    assert jwks_code == EXIT_OK
    jwks = json.loads(jwks_text)
    assert [k["kty"] for k in jwks["keys"]] == ["OKP"]
    assert "d" not in jwks["keys"][0]


async def test_verify_prints_a_table_and_json(platform: Platform, broker: BrokerApp) -> None:
    r = resident()
    subject = f"{r.document_type}:{r.document_number}"

    (code, table, err), (json_code, text, _) = await asyncio.gather(
        cli(*verify_args(broker.target, subject, "--request-id", "cli-table-1")),
        cli(*verify_args(broker.target, subject, "--request-id", "cli-json-1", "--json")),
    )

    assert code == EXIT_OK, err
    (trace,) = platform.trace_rows(request_id="cli-table-1")
    assert f"request cli-table-1  trace {trace['trace_id']}" in table
    rows = [line for line in table.splitlines() if line.split() and "/v1" in line.split()[0]]
    assert [line.split()[0] for line in rows] == [cid for cid, _ in HOUSING_CHECKS]
    assert all(line.split()[2] == "VERIFIED" for line in rows)

    assert json_code == EXIT_OK
    answer = json.loads(text)
    assert answer["request_id"] == "cli-json-1"
    assert answer["trace_id"] == platform.trace_rows(request_id="cli-json-1")[0]["trace_id"]
    expected = expected_housing_claims(r)
    for outcome in answer["outcomes"]:
        assert outcome["status"] == "VERIFIED"
        assert outcome["claims"] == expected[outcome["certificate_type_id"]]
        assert outcome["attestation"].count(".") == 2


async def test_verify_denied_invalid_and_broker_down(platform: Platform, broker: BrokerApp) -> None:
    r = resident(lambda r: r.document_type == "DNI")
    good = f"DNI:{r.document_number}"
    wrong_letter = f"DNI:{r.document_number[:-1]}{'A' if r.document_number[-1] != 'A' else 'B'}"
    down = f"127.0.0.1:{free_port()}"

    (denied, _, denied_err), (invalid, _, invalid_err), (unavailable, _, down_err) = await asyncio.gather(
        cli(*verify_args(broker.target, good, procedure="PARKING-PERMIT")),
        cli(*verify_args(broker.target, wrong_letter)),
        cli(*verify_args(down, good, "--timeout", "3")),
    )

    assert denied == EXIT_DENIED, denied_err
    assert "PROCEDURE_NOT_AUTHORISED" in denied_err
    (row,) = platform.trace_rows(decision="DENIED")
    assert f"trace {row['trace_id']}" in denied_err

    assert invalid == EXIT_INVALID, invalid_err
    assert "field subject.document_number" in invalid_err

    assert unavailable == EXIT_UNAVAILABLE, down_err
    assert "UNAVAILABLE" in down_err
    assert "Traceback" not in denied_err + invalid_err + down_err


async def test_serve_provider_runs_until_sigterm() -> None:
    target = f"127.0.0.1:{free_port()}"
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        "serve",
        "provider",
        "tax",
        "--listen",
        target,
        *provider_tls_args(),
        "--log-format",
        "text",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=_env(),
    )
    try:
        status = None
        deadline = time.monotonic() + 20
        async with broker_channel(target) as channel:
            health = health_stub(channel)
            while time.monotonic() < deadline and proc.returncode is None:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    reply = await health.Check(
                        health_pb2.HealthCheckRequest(service="onceonly.v1.Provider"), timeout=1
                    )
                    status = reply.status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                await asyncio.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.SERVING

        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0, output.decode(errors="replace")


async def test_catalog_json_spells_each_value_once(broker: BrokerApp) -> None:
    """``--json`` output uses the one spelling of each value (LAW), never the proto enum name."""
    code, text, _ = await cli("catalog", "--broker", broker.target, "--json")
    assert code == EXIT_OK
    catalog = json.loads(text)
    bases = {b for c in catalog["certificateTypes"] for b in c["allowedLegalBases"]}
    assert bases == {"LAW", "CONSENT", "NO_OBJECTION"}
    kinds = {p["type"] for c in catalog["certificateTypes"] for p in c.get("parameters", [])}
    assert kinds and all(not k.startswith("PARAMETER_TYPE_") for k in kinds)


async def test_verify_under_no_objection(broker: BrokerApp) -> None:
    """``--no-objection NOTICE`` sends SCSP's NoOpo; the seeded agreements allow only LAW and CONSENT."""
    r = resident(lambda r: r.document_type == "DNI")
    args = verify_args(broker.target, f"DNI:{r.document_number}")
    law = args.index("--law")
    args[law : law + 2] = ["--no-objection", "Notice with the application form"]
    code, _, err = await cli(*args)
    assert code == EXIT_DENIED and "LEGAL_BASIS_NOT_ALLOWED" in err and "NO_OBJECTION" in err, err


async def test_demo_residents_lists_subjects_and_what_the_providers_answer(
    platform: Platform, broker: BrokerApp
) -> None:
    """The README's subject used to be in no agency's records; now the CLI lists real ones."""
    code, out, err = await cli("demo", "residents", "--limit", "5", "--csv", "--known-everywhere")
    assert code == 0, err
    header, *rows = list(csv.reader(io.StringIO(out)))
    assert header[:2] == ["document_type", "document_number"] and len(rows) == 5
    client = platform.client(broker)
    for kind, number, residence, compliance, _, unemployment in rows:
        result = await client.verify(
            **verify_kwargs(
                subject=Subject(kind, number),
                checks=[(TAX_COMPLIANCE, {}), (UNEMPLOYMENT, {})],
            )
        )
        claims = {o.certificate_type_id: dict(o.claims) for o in result.outcomes}
        assert claims[TAX_COMPLIANCE]["compliant"] is (compliance == "compliant")
        assert claims[UNEMPLOYMENT]["registered_unemployed"] is (unemployment == "unemployed")
        assert residence.startswith("municipality ")
    code, out, _ = await cli("demo", "residents", "--limit", "2")
    assert code == 0 and "try one: onceonly verify … --subject DNI:" in out


async def test_the_readme_subject_is_a_synthetic_resident() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    known = {f"{r.document_type}:{r.document_number}" for r in synthetic.population()}
    used = set(re.findall(r"--subject ((?:DNI|NIE):[0-9A-Z]+)", readme))
    assert used and used <= known, used - known


async def test_servers_say_what_stops_them_from_starting(platform: Platform, tmp_path: Path) -> None:
    """A taken port, missing certificates and an empty governance: each named, with what to do, and
    never a traceback (they used to end in RuntimeError or `[Errno 2] … tax-key.pem`)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        code, _, err = await cli("serve", "provider", "tax", "--listen", address, *provider_tls_args())
        assert code == 1 and f"cannot listen on {address}: the address is taken" in err
        assert "Traceback" not in err
        code, _, err = await cli(
            "serve", "broker", "--listen", address, "--var-dir", str(tmp_path / "v"), *provider_tls_args()
        )
        assert code == 1 and f"cannot listen on {address}: the address is taken" in err
        assert "Traceback" not in err

    empty = tmp_path / "no-pki"
    empty.mkdir()
    code, _, err = await cli("serve", "provider", "tax", "--listen", "127.0.0.1:0", "--tls-dir", str(empty))
    assert code == 1 and f"run `onceonly pki init --dir {empty}`" in err
    assert "Errno" not in err and "Traceback" not in err


async def test_a_broker_without_agreements_says_so_and_the_packaged_seed_is_named(
    platform: Platform, tmp_path: Path
) -> None:
    async def start_log(*extra: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *onceonly_argv(),
            "serve",
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--var-dir",
            str(tmp_path / f"v{len(extra)}"),
            *provider_tls_args(),
            "--log-format",
            "text",
            *extra,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=_env(),
            cwd=tmp_path,  # outside the checkout: the packaged seed is found by name
        )
        seen = ""
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "serving" not in seen.lower():
                line = await asyncio.wait_for(proc.stdout.readline(), 20)
                if not line:
                    break
                seen += line.decode()
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await proc.wait()
        return seen

    bare = await start_log()
    assert "no agreement is recorded: every request will be denied" in bare
    assert "onceonly governance import FILE" in bare
    seeded = await start_log("--seed-agreements", "demo")
    assert "seed file recorded" in seeded and "no agreement is recorded" not in seeded
    assert "alembic" not in bare and "database schema migrated" in bare, "one line of ours, not alembic's"


async def test_what_a_caseworker_reads(platform: Platform, broker: BrokerApp) -> None:
    """Whole numbers as the attestation signs them, times with their zone, one error code, and a
    provider that is down named as an agency — never its internal address."""
    person = resident()
    code, out, err = await cli(*verify_args(broker.target, f"DNI:{person.document_number}"))
    assert code == EXIT_OK, err
    assert (
        f"fiscal_year={synthetic.LATEST_FISCAL_YEAR}" in out
        and f"{synthetic.LATEST_FISCAL_YEAR}.0" not in out
    )
    code, out, _ = await cli(*verify_args(broker.target, f"DNI:{person.document_number}"), "--json")
    decided = json.loads(out)["decided_at"]
    assert decided.endswith("+00:00"), decided

    code, _, err = await cli(*verify_args(broker.target, "DNI:12345678A"))
    assert code == EXIT_INVALID
    first = err.splitlines()[0]
    assert first.count("INVALID_ARGUMENT") == 1 and first.startswith("error: invalid request: "), first

    tax = platform.providers["tax"]
    address = f"127.0.0.1:{tax.port}"
    await tax.stop(0)
    code, out, err = await cli(*verify_args(broker.target, f"DNI:{person.document_number}"))
    assert code == EXIT_OK, err
    assert "Tax Agency could not be reached; try again later" in out
    assert address not in out and "provider answered" not in out


async def test_one_cli(platform: Platform, broker: BrokerApp) -> None:
    """--broker everywhere (health too), --org taken from the certificate, jwks as a table unless
    --json, and a reader that goes away (`| head`) ends the command quietly."""
    code, out, err = await cli("health", "--broker", broker.target, *provider_tls_args(), "--cert", "broker")
    assert code == 0 and out.strip().endswith("SERVING"), err
    code, out, _ = await cli("jwks", "--broker", broker.target)
    assert code == 0 and out.splitlines()[0].split() == ["kid", "type", "curve", "use"]
    code, out, _ = await cli("jwks", "--broker", broker.target, "--json")
    assert code == 0 and json.loads(out)["keys"]

    args = verify_args(broker.target, f"DNI:{resident().document_number}")
    at = args.index("--org")
    code, out, err = await cli(*args[:at], *args[at + 2 :])  # no --org: the certificate's
    assert code == EXIT_OK, err

    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        "demo",
        "residents",
        "--limit",
        "3000",
        "--csv",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    await proc.stdout.readline()
    proc.stdout.feed_eof()
    transport = proc._transport  # type: ignore[attr-defined]
    transport.get_pipe_transport(1).close()  # the reader is gone, as `head -1` would be
    err_bytes = await asyncio.wait_for(proc.stderr.read(), 20)
    await proc.wait()
    assert b"Traceback" not in err_bytes and b"BrokenPipeError" not in err_bytes


async def test_a_wrong_credential_is_told_apart_from_a_broker_that_is_down(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    """Each used to print `UNAVAILABLE … Socket closed` and exit 4, like a stopped broker."""
    other = tmp_path / "other-pki"
    init_pki(other)
    pki_dir = str(platform.pki.dir)
    target = broker.target
    cases = {
        "the broker requires a client certificate": ("health", "--broker", target, "--tls-dir", pki_dir),
        "takes client certificates, not tokens": (
            "catalog", "--broker", target, "--tls-dir", pki_dir, "--token", "a.b.c",
        ),
        "the server's certificate is not from the CA you gave": (
            "catalog", "--broker", target, "--tls-dir", pki_dir, "--cert", "housing-office",
            "--ca", str(other / "ca.pem"),
        ),
        "does not accept your certificate": (
            "catalog", "--broker", target, "--tls-dir", str(other), "--cert", "housing-office",
            "--ca", str(platform.pki.dir / "ca.pem"),
        ),
        "speaks TLS: drop --insecure": ("catalog", "--broker", target, "--insecure"),
    }  # fmt: skip
    for expected, args in cases.items():
        code, _, err = await cli(*args, credentials=False)
        assert expected in err, (args, err)
        assert code == 5, (args, code)  # not authenticated: the broker is up
        assert "E1207" not in err and "Traceback" not in err
    code, _, err = await cli(
        "catalog", "--broker", f"127.0.0.1:{free_port()}", "--tls-dir", pki_dir, "--cert", "housing-office"
    )
    assert code == EXIT_UNAVAILABLE and "nothing listens on" in err


async def test_submit_then_job_waits_for_the_results(broker: BrokerApp) -> None:
    """Asynchronous mode from the shell: `submit` prints the job at once, `job --wait` prints every
    subject's result once it is done (a refused one as refused), and `--json` carries the same."""
    known = resident()
    args = verify_args(broker.target, f"{known.document_type}:{known.document_number}")
    args[0] = "submit"
    args += ["--subject", "DNI:12345678A", "--submission-id", "cli-async-1"]
    code, out, err = await cli(*args)
    assert code == EXIT_OK, err
    first = out.splitlines()[0].split()
    assert first[0] == "job" and first[2] in ("PENDING", "IN_PROGRESS", "DONE") and first[3].endswith("/2")
    job_id = first[1]
    again_code, again, _ = await cli(*args)  # the same submission: the same job
    assert again_code == EXIT_OK and again.split()[1] == job_id

    code, out, err = await cli("job", job_id, "--broker", broker.target, "--wait", "20")
    assert code == EXIT_OK, err
    assert out.splitlines()[0].split()[2:4] == ["DONE", "2/2"]
    assert out.count("VERIFIED") == len(HOUSING_CHECKS)
    assert "refused: invalid request: subject.document_number DNI check letter does not match" in out

    code, text, _ = await cli("job", job_id, "--broker", broker.target, "--json")
    data = json.loads(text)
    assert data["state"] == "DONE" and data["submission_id"] == "cli-async-1"
    assert [bool(r.get("outcomes")) for r in data["results"]] == [True, False]
    assert data["results"][1]["error"]["code"] == "INVALID_ARGUMENT"

    code, _, err = await cli("job", "no-such-job", "--broker", broker.target)
    assert code != EXIT_OK and "no verification job 'no-such-job' [NOT_FOUND, JOB_NOT_FOUND]" in err
