"""``onceonly verify-bulk``: a CSV of subjects, a results file, a summary, and resumption."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from onceonly.broker.app import BrokerApp
from onceonly.providers import synthetic
from tests.conftest import LAW, ORG, PROCEDURE, TAX_COMPLIANCE, UNEMPLOYMENT, Platform, known_everywhere
from tests.consumers.test_cli import EXIT_INVALID, EXIT_OK, cli


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
    assert "resumed from results file: 121" in out
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
    assert "missing column(s) document_number, document_type" in err
    assert platform.trace_rows() == []
