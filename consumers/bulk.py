"""``onceonly verify-bulk``: many subjects under one purpose, from a CSV file.

The input CSV has a header row with ``document_type,document_number`` and optionally
``request_id``. Without request ids, each row gets ``<batch>-<row>``, where the batch id is a
digest of the file and the request, so running the same command again re-sends the same ids:
subjects already decided are answered from the ledger and never traced twice. Results go to a
JSON-lines file, one object per subject; an interrupted run resumes from it.
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
    subject: Subject


def read_rows(path: Path, batch_id: str) -> list[Row]:
    """Read the subjects of a CSV file, giving rows without a request id ``<batch_id>-<row>``."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = set(reader.fieldnames or ())
            missing = {"document_type", "document_number"} - columns
            if missing:
                raise BulkInputError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            rows = []
            for number, record in enumerate(reader, start=1):
                request_id = (record.get("request_id") or "").strip() or f"{batch_id}-{number}"
                rows.append(
                    Row(
                        request_id,
                        Subject(record["document_type"].strip().upper(), record["document_number"].strip()),
                    )
                )
    except OSError as exc:
        raise BulkInputError(f"cannot read {path}: {exc.strerror}") from None
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BulkInputError(f"{path}: not a readable CSV file ({exc})") from None
    seen: set[str] = set()
    for row in rows:
        if row.request_id in seen:
            raise BulkInputError(f"{path}: request id {row.request_id!r} appears twice")
        seen.add(row.request_id)
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


def result_line(item: BulkItem) -> dict[str, Any]:
    if item.verification is not None:
        outcomes = item.verification.outcomes
        statuses = Counter(o.status for o in outcomes)
        status = "VERIFIED" if statuses["VERIFIED"] == len(outcomes) else "PARTIAL"
        return {
            "request_id": item.request_id,
            "status": status,
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
        "request_id": item.request_id,
        "status": item.error.code,
        "reason": item.error.reason,
        "message": item.error.message,
        "trace_id": item.error.trace_id,
    }


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
) -> Counter[str]:
    """Verify every row not yet answered in ``out_path``; return counts by result status."""
    done = answered_ids(out_path)
    pending = {r.request_id: r for r in rows if r.request_id not in done}
    counts: Counter[str] = Counter(resumed=len(rows) - len(pending))
    progress = Progress(len(rows), done=counts["resumed"])
    attempt = 0
    with out_path.open("a", encoding="utf-8") as out:
        while pending:
            try:
                async for item in client.verify_bulk(
                    consumer=consumer,
                    purpose=purpose,
                    legal_basis=legal_basis,
                    checks=checks,
                    subjects=((r.request_id, r.subject) for r in list(pending.values())),
                    window=window,
                ):
                    line = result_line(item)
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


def iter_summary(counts: Counter[str], elapsed: float, total: int) -> Iterator[str]:
    decided = sum(v for k, v in counts.items() if k != "resumed")
    yield f"subjects: {total:,} (resumed from results file: {counts['resumed']:,})"
    for key in sorted(k for k in counts if k != "resumed"):
        yield f"  {key}: {counts[key]:,}"
    if decided:
        yield f"decided {decided:,} in {elapsed:.1f} s ({decided / max(elapsed, 1e-6):,.0f} subjects/s)"


__all__ = ["BrokerError", "BulkInputError", "Row", "answered_ids", "batch_id_for", "read_rows", "run_bulk"]
