"""``onceonly verify-bulk``: many subjects under one purpose, from a CSV file.

The input CSV has a header row with ``document_type,document_number`` and optionally
``request_id`` and a reference column of the caller's (``--reference COLUMN``; ``reference`` if
the file has one). Without request ids, each row gets ``<batch>-<line>``, where the batch id is a
digest of the file and the request, so running the same command again re-sends the same ids:
subjects already decided are answered from the ledger and never traced twice. Results go to a
JSON-lines file, one object per row, naming the row by its line in the file (as a spreadsheet
numbers it: the header is line 1) and by its reference, never by the document number unless asked
(``--include-document``). A row that cannot be read (a missing column, an unknown document type) is
an ``INPUT_ERROR`` result naming its line, and the others go on. An interrupted run resumes from
the results file.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from onceonly.consumers.client import (
    BrokerClient,
    BrokerError,
    BulkItem,
    Check,
    Consumer,
    LegalBasis,
    Purpose,
    Subject,
    Unavailable,
)


class BulkInputError(ValueError):
    """The CSV file cannot be used; the message names the row and column."""


@dataclass(frozen=True, slots=True)
class Row:
    request_id: str
    subject: Subject | None
    """``None`` for a row that could not be read (see ``error``)."""
    line: int = 0
    """The row's line in the file, as a spreadsheet shows it (the header is line 1)."""
    reference: str = ""
    error: str = ""


DOCUMENT_TYPES = ("DNI", "NIE", "PASSPORT")
REFERENCE_COLUMN = "reference"


def _row(record: dict[str | Any, Any], line: int, request_id: str, reference_column: str) -> Row:
    reference = str(record.get(reference_column) or "").strip() if reference_column else ""
    kind = str(record.get("document_type") or "").strip().upper()
    number = str(record.get("document_number") or "").strip()
    error = ""
    if not kind or not number:
        missing = [c for c, v in (("document_type", kind), ("document_number", number)) if not v]
        error = f"line {line}: {' and '.join(missing)} missing"
    elif kind not in DOCUMENT_TYPES:
        error = f"line {line}: document_type must be one of {', '.join(DOCUMENT_TYPES)}"
    if error:
        return Row(request_id, None, line, reference, error)
    return Row(request_id, Subject(kind, number), line, reference)


def read_rows(path: Path, batch_id: str, reference_column: str | None = None) -> list[Row]:
    """Read the subjects of a CSV file, giving rows without a request id ``<batch_id>-<line>``.
    Rows that cannot be read come back with ``error`` set; a file that cannot be read at all is
    :class:`BulkInputError`."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            missing = {"document_type", "document_number"} - columns
            if missing:
                raise BulkInputError(
                    f"{path}: the header (line 1) lacks column(s) {', '.join(sorted(missing))}; "
                    "it needs document_type,document_number[,request_id][,reference]"
                )
            if reference_column and reference_column not in columns:
                raise BulkInputError(f"{path}: no column {reference_column!r} for --reference")
            column = reference_column or (REFERENCE_COLUMN if REFERENCE_COLUMN in columns else "")
            rows = []
            for record in reader:
                line = reader.line_num
                request_id = str(record.get("request_id") or "").strip() or f"{batch_id}-{line}"
                rows.append(_row(record, line, request_id, column))
    except OSError as exc:
        raise BulkInputError(f"cannot read {path}: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BulkInputError(f"{path}: not a readable CSV file ({exc})") from None
    seen: dict[str, int] = {}
    for row in rows:
        if row.request_id in seen:
            raise BulkInputError(
                f"{path}: request id {row.request_id!r} appears on lines "
                f"{seen[row.request_id]} and {row.line}"
            )
        seen[row.request_id] = row.line
    return rows


def batch_id_for(path: Path, parts: Sequence[str]) -> str:
    """A stable id for this file and request: the same command gives the same request ids."""
    digest = hashlib.sha256(path.read_bytes())
    for part in parts:
        digest.update(b"\0" + part.encode("utf-8"))
    return "bulk-" + digest.hexdigest()[:12]


def answered_ids(out_path: Path) -> set[str]:
    """Request ids that already have a final answer in a results file (for resuming)."""
    done: set[str] = set()
    if not out_path.exists():
        return done
    with out_path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption: that subject is sent again
            if entry.get("request_id") and entry.get("status") != "UNAVAILABLE":
                done.add(entry["request_id"])
    return done


def overall_status(statuses: Sequence[str]) -> str:
    """A subject's result: VERIFIED (every check), PARTIAL (some), NOT_VERIFIED (none)."""
    verified = sum(1 for s in statuses if s == "VERIFIED")
    if verified == len(statuses):
        return "VERIFIED"
    return "PARTIAL" if verified else "NOT_VERIFIED"


def result_line(item: BulkItem, row: Row | None = None, *, include_document: bool = False) -> dict[str, Any]:
    line: dict[str, Any] = {"request_id": item.request_id}
    if row is not None:
        line["line"] = row.line
        if row.reference:
            line["reference"] = row.reference
        if include_document and row.subject is not None:
            line["document"] = str(row.subject)
    if item.verification is not None:
        outcomes = item.verification.outcomes
        return {
            **line,
            "status": overall_status([o.status for o in outcomes]),
            "trace_id": item.verification.trace_id,
            "outcomes": [
                {
                    "certificate_type_id": o.certificate_type_id,
                    "status": o.status,
                    "claims": dict(o.claims),
                    "attestation": o.attestation,
                    "detail": o.detail,
                }
                for o in outcomes
            ],
        }
    assert item.error is not None
    return {
        **line,
        "status": item.error.code,
        "reason": item.error.reason,
        "message": item.error.message,
        "trace_id": item.error.trace_id,
    }


def input_error_line(row: Row) -> dict[str, Any]:
    """The result of a row that could not be read: recorded, never sent."""
    line: dict[str, Any] = {"request_id": row.request_id, "line": row.line}
    if row.reference:
        line["reference"] = row.reference
    return {**line, "status": INPUT_ERROR, "message": row.error}


INPUT_ERROR = "INPUT_ERROR"


def file_totals(out_path: Path, rows: Sequence[Row]) -> Counter[str]:
    """Results by status for the whole file, from the results file (so a resumed run counts every
    row, not only those it sent); the last line of a request id counts."""
    wanted = {r.request_id for r in rows}
    latest: dict[str, str] = {}
    if out_path.exists():
        with out_path.open(encoding="utf-8") as fh:
            for text in fh:
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError:
                    continue
                if entry.get("request_id") in wanted:
                    latest[entry["request_id"]] = str(entry.get("status", ""))
    return Counter(latest.values())


@dataclass
class Progress:
    """A progress line on standard error: a bar on a terminal, a line every few seconds otherwise."""

    total: int
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    _last: float = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        interactive = self.stream.isatty()
        if self.done < self.total and now - self._last < (0.1 if interactive else 5.0):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        bar = "#" * int(share * 30)
        line = (
            f"[{bar:<30}] {self.done:,}/{self.total:,} {share:4.0%}  {rate:,.0f} subjects/s  "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d}"
        )
        self.stream.write(("\r" + line) if interactive else (line + "\n"))
        if interactive and self.done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


async def run_bulk(
    client: BrokerClient,
    *,
    rows: list[Row],
    out_path: Path,
    consumer: Consumer,
    purpose: Purpose,
    legal_basis: LegalBasis,
    checks: list[Check],
    window: int = 64,
    retries: int = 3,
    include_document: bool = False,
    counts: Counter[str] | None = None,
) -> Counter[str]:
    """Verify every row not yet answered in ``out_path``; return counts by result status of this
    run (and ``resumed``: rows answered before). ``counts`` is updated as results are written, so
    that an interrupted caller can say how far it got."""
    done = answered_ids(out_path)
    counts = counts if counts is not None else Counter()
    counts["resumed"] = sum(1 for r in rows if r.request_id in done)
    progress = Progress(len(rows), done=counts["resumed"])
    attempt = 0
    with out_path.open("a", encoding="utf-8") as out:
        for row in rows:
            if row.error and row.request_id not in done:
                out.write(json.dumps(input_error_line(row), ensure_ascii=False) + "\n")
                counts[INPUT_ERROR] += 1
                progress.advance()
        out.flush()
        pending = {r.request_id: r for r in rows if r.request_id not in done and not r.error}
        while pending:
            try:
                async for item in client.verify_bulk(
                    consumer=consumer,
                    purpose=purpose,
                    legal_basis=legal_basis,
                    checks=checks,
                    subjects=(
                        (r.request_id, r.subject) for r in list(pending.values()) if r.subject is not None
                    ),
                    window=window,
                ):
                    line = result_line(item, pending.get(item.request_id), include_document=include_document)
                    if line["status"] == "UNAVAILABLE":
                        continue  # not decided: left pending, sent again on the next attempt
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                    pending.pop(item.request_id, None)
                    counts[line["status"]] += 1
                    progress.advance()
            except Unavailable:
                pass
            out.flush()
            if pending:
                attempt += 1
                if attempt > retries:
                    raise Unavailable(
                        "UNAVAILABLE",
                        f"{len(pending)} subjects still undecided after "
                        f"{retries} retries; run the same command again to resume",
                    )
                await asyncio.sleep(min(2.0 * attempt, 10.0))
    return counts


def iter_summary(counts: Counter[str], totals: Counter[str], elapsed: float, total: int) -> Iterator[str]:
    """The summary: the whole file's results (after a resume too), then this run's pace."""
    decided = sum(v for k, v in counts.items() if k != "resumed")
    yield f"subjects: {total:,} (answered before this run: {counts['resumed']:,})"
    for key in sorted(totals):
        yield f"  {key}: {totals[key]:,}"
    if decided:
        rate = decided / max(elapsed, 1e-6)
        yield f"this run answered {decided:,} in {elapsed:.1f} s ({rate:,.0f} subjects/s)"


__all__ = [
    "INPUT_ERROR",
    "BrokerError",
    "BulkInputError",
    "Row",
    "answered_ids",
    "batch_id_for",
    "file_totals",
    "read_rows",
    "run_bulk",
]
