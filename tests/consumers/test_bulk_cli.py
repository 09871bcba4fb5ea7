"""``onceonly verify-bulk``: a CSV of subjects, a results file, a summary, and resumption."""

from __future__ import annotations

import asyncio
import csv
import json
import signal
from pathlib import Path

from onceonly.broker.app import BrokerApp
from onceonly.identity import make_dni
from onceonly.processes import onceonly_argv
from onceonly.providers import synthetic
from tests.conftest import LAW, ORG, PROCEDURE, TAX_COMPLIANCE, UNEMPLOYMENT, Platform, known_everywhere
from tests.consumers.test_cli import EXIT_INVALID, EXIT_OK, cli
from tests.consumers.test_cli import _env as cli_env


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["document_type", "document_number"])
        writer.writerows(rows)


def bulk_args(target: str, csv_path: Path, *extra: str) -> list[str]:
    return [
        "verify-bulk", str(csv_path), "--broker", target, "--org", ORG, "--unit", "Benefits",
        "--officer", "officer-17", "--procedure", PROCEDURE, "--purpose", "Yearly re-check",
        "--case-file", "REVIEW-2026", "--law", LAW,
        "--check", TAX_COMPLIANCE, "--check", UNEMPLOYMENT, *extra,
    ]  # fmt: skip


async def test_bulk_file_is_verified_summarised_and_resumable(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    residents = [r for r in synthetic.population() if known_everywhere(r)][:120]
    source = tmp_path / "recipients.csv"
    write_csv(source, [(r.document_type, r.document_number) for r in residents] + [("DNI", "12345678A")])

    code, out, err = await cli(*bulk_args(broker.target, source))

    assert code == EXIT_OK, err
    assert "subjects: 121" in out
    assert "VERIFIED: 120" in out
    assert "INVALID_ARGUMENT: 1" in out
    results_path = tmp_path / "recipients.csv.results.jsonl"
    lines = [json.loads(line) for line in results_path.read_text().splitlines()]
    assert len(lines) == 121
    assert len({line["request_id"] for line in lines}) == 121
    assert "120/121" in err or "121/121" in err  # progress was shown
    traced = len(platform.trace_rows())
    assert traced == 120

    # Run again: everything is already in the results file, nothing is sent or traced again.
    code, out, _ = await cli(*bulk_args(broker.target, source))
    assert code == EXIT_OK
    assert "answered before this run: 121" in out
    assert "VERIFIED: 120" in out and "INVALID_ARGUMENT: 1" in out, "totals for the whole file after a resume"
    assert len(platform.trace_rows()) == traced

    # Lose the results file: the same request ids are sent and answered from the ledger.
    results_path.unlink()
    code, out, _ = await cli(*bulk_args(broker.target, source))
    assert code == EXIT_OK
    again = [json.loads(line) for line in results_path.read_text().splitlines()]
    assert {(x["request_id"], x.get("trace_id")) for x in again} == {
        (x["request_id"], x.get("trace_id")) for x in lines
    }
    assert len(platform.trace_rows()) == traced


async def test_a_file_without_the_columns_is_refused(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text("dni\n12345678Z\n")

    code, _, err = await cli(*bulk_args(broker.target, source))

    assert code == EXIT_INVALID
    assert "the header (line 1) lacks column(s) document_number, document_type" in err
    assert "Traceback" not in err
    assert platform.trace_rows() == []


async def test_bad_rows_are_reported_by_line_and_the_others_go_on(
    platform: Platform, broker: BrokerApp, tmp_path: Path
) -> None:
    """A row with one column used to end the batch in a traceback (AttributeError on None)."""
    known = next(r for r in synthetic.population() if known_everywhere(r))
    nobody = make_dni(1)  # valid, and in no agency's records
    source = tmp_path / "tenants.csv"
    source.write_text(
        "document_type,document_number,tenant\n"
        f"{known.document_type},{known.document_number},T-001\n"
        "DNI\n"
        "XYZ,123,T-003\n"
        f"DNI,{nobody},T-004\n"
    )

    code, out, err = await cli(*bulk_args(broker.target, source, "--reference", "tenant"))

    assert code == EXIT_OK, err
    assert "Traceback" not in err
    assert "INPUT_ERROR: 2" in out and "VERIFIED: 1" in out and "NOT_VERIFIED: 1" in out
    text = (tmp_path / "tenants.csv.results.jsonl").read_text()
    lines = {entry["line"]: entry for entry in map(json.loads, text.splitlines())}
    assert lines[2]["reference"] == "T-001" and lines[2]["status"] == "VERIFIED"
    assert lines[3] == {
        "request_id": lines[3]["request_id"],
        "line": 3,
        "status": "INPUT_ERROR",
        "message": "line 3: document_number missing",
    }
    assert lines[4]["message"] == "line 4: document_type must be one of DNI, NIE, PASSPORT"
    assert lines[5]["status"] == "NOT_VERIFIED", "nothing verified is not PARTIAL"
    assert known.document_number not in text and nobody not in text
    assert len(platform.trace_rows()) == 2, "rows that cannot be read are never sent"

    (tmp_path / "tenants.csv.results.jsonl").unlink()
    code, _, _ = await cli(*bulk_args(broker.target, source, "--include-document"))
    assert code == EXIT_OK
    assert (
        f"{known.document_type}:{known.document_number}"
        in (tmp_path / "tenants.csv.results.jsonl").read_text()
    )
    code, _, err = await cli(*bulk_args(broker.target, source, "--reference", "nope"))
    assert code == EXIT_INVALID and "no column 'nope' for --reference" in err


async def test_ctrl_c_says_how_to_resume(platform: Platform, broker: BrokerApp, tmp_path: Path) -> None:
    residents = [r for r in synthetic.population() if known_everywhere(r)][:2500]
    source = tmp_path / "many.csv"
    write_csv(source, [(r.document_type, r.document_number) for r in residents])
    proc = await asyncio.create_subprocess_exec(
        *onceonly_argv(),
        *bulk_args(broker.target, source, "--window", "4"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_env(),
    )
    results = tmp_path / "many.csv.results.jsonl"
    for _ in range(200):  # until the first results are written (at most 20 s)
        if results.exists() and results.stat().st_size > 0:
            break
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130
    assert "run the same command again to resume" in err.decode() and "Traceback" not in err.decode()

    code, out_text, _ = await cli(*bulk_args(broker.target, source), timeout=120)
    assert code == EXIT_OK and "subjects: 2,500" in out_text and "VERIFIED: 2,500" in out_text
