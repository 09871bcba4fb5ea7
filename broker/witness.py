"""The witness: signed chain heads kept outside the database, so the ledger's integrity does not
rest on the database alone.

Every checkpoint the ledger signs is also appended (and fsynced) to a witness file, one JSON line
per head — by default ``<var_dir>/ledger/witness.jsonl``, beside the chain id and away from the
database. Whoever can rewrite the database cannot rewrite the witness unless they also hold that
file; and since each head is signed with the broker's key, nobody can forge one. Against it,
:func:`witness_problems` finds what checks inside the database cannot: a chain cut at its tail
together with its checkpoints, a whole chain deleted, an older copy of the database restored over
a newer one, and records edited and re-hashed after every checkpoint row was deleted. The broker
refuses to append to a chain its witness says was cut (:func:`check_before_append`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from onceonly.broker.chain import ChainHead, load_head, signature_problem
from onceonly.broker.storage import CheckpointRow, GovernanceEventRow, TraceRow
from onceonly.errors import Unavailable

__all__ = [
    "GOVERNANCE_CHAIN",
    "ChainCut",
    "WitnessLog",
    "Witnessed",
    "check_before_append",
    "governance_witness_problems",
    "witness_problems",
]

GOVERNANCE_CHAIN = "governance-log"
"""The witness's name for the governance log (its heads are signed over ``{seq, hash}``)."""

_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_CHECKPOINTS: sa.Table = CheckpointRow.__table__  # type: ignore[attr-defined]
_GOVERNANCE_EVENTS: sa.Table = GovernanceEventRow.__table__  # type: ignore[attr-defined]


class ChainCut(Unavailable):
    """The database lost records the witness saw: the broker will not append after the cut."""

    reason = "LEDGER_CHAIN_CUT"


@dataclass(frozen=True, slots=True)
class Witnessed:
    """One signed chain head as the witness holds it."""

    chain_id: str
    seq: int
    head_hash: str
    signature: str


class WitnessLog:
    """An append-only file of signed chain heads (JSON lines)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, chain_id: str, head: ChainHead, signature: str) -> None:
        """Add a signed head, durably (fsync) before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(
            {"chain_id": chain_id, "seq": head.seq, "head_hash": head.hash, "signature": signature}
        )
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def heads(self) -> list[Witnessed]:
        """Every witnessed head, in the order written (no file: none)."""
        try:
            text = self.path.read_text("utf-8")
        except FileNotFoundError:
            return []
        out = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out.append(
                    Witnessed(str(d["chain_id"]), int(d["seq"]), str(d["head_hash"]), str(d["signature"]))
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{self.path}:{number}: not a witnessed head ({exc})") from None
        return out

    def latest(self) -> dict[str, Witnessed]:
        """The latest witnessed head of each chain."""
        latest: dict[str, Witnessed] = {}
        for w in self.heads():
            if w.chain_id not in latest or w.seq >= latest[w.chain_id].seq:
                latest[w.chain_id] = w
        return latest


def _hash_at(conn: sa.Connection, chain_id: str, seq: int) -> str | None:
    """The hash the database holds for position ``seq`` of a chain: its record's, or (purged
    records) the checkpoint's there."""
    found = conn.execute(
        sa.select(_TRACES.c.record_hash).where(_TRACES.c.chain_id == chain_id, _TRACES.c.seq == seq)
    ).scalar()
    if found is None:
        found = conn.execute(
            sa.select(_CHECKPOINTS.c.head_hash).where(
                _CHECKPOINTS.c.chain_id == chain_id, _CHECKPOINTS.c.seq == seq
            )
        ).scalar()
    return None if found is None else str(found)


def _signed(w: Witnessed, keys: Mapping[str, Any]) -> str:
    """Why the witnessed head's signature is not acceptable ("" when it is)."""
    if w.chain_id == GOVERNANCE_CHAIN:  # the governance log signs {seq, hash}
        expected: dict[str, Any] = {"seq": w.seq, "hash": w.head_hash}
    else:
        expected = {"chain_id": w.chain_id, "seq": w.seq, "head_hash": w.head_hash}
    return signature_problem(w.signature, keys, expected, "the line differs from what was signed")


def witness_problems(
    engine: sa.Engine, heads: Iterable[Witnessed], keys: Mapping[str, Any]
) -> dict[str, list[str]]:
    """Chain id → what the database contradicts in the witness (no entry: nothing)."""
    problems: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for w in heads:
            if w.chain_id == GOVERNANCE_CHAIN:
                continue  # see governance_witness_problems
            where = f"witnessed head at seq {w.seq}"
            bad = _signed(w, keys)
            if bad:
                problems.setdefault(w.chain_id, []).append(f"{where}: {bad}")
                continue
            head = load_head(conn, w.chain_id)
            if head.seq == 0:
                problems.setdefault(w.chain_id, []).append(
                    f"the whole chain is missing from the database; the witness saw it up to seq {w.seq}"
                )
            elif head.seq < w.seq:
                problems.setdefault(w.chain_id, []).append(
                    f"cut at its tail: the witness saw seq {w.seq}, the database ends at seq {head.seq} "
                    "(records deleted, or an older copy of the database restored)"
                )
            elif _hash_at(conn, w.chain_id, w.seq) != w.head_hash:
                problems.setdefault(w.chain_id, []).append(
                    f"{where}: the database holds another record there (edited and re-hashed, or "
                    "another copy of the database)"
                )
            elif (
                conn.execute(
                    sa.select(_CHECKPOINTS.c.head_hash).where(
                        _CHECKPOINTS.c.chain_id == w.chain_id, _CHECKPOINTS.c.seq == w.seq
                    )
                ).scalar()
                != w.head_hash
            ):
                problems.setdefault(w.chain_id, []).append(
                    f"checkpoint at seq {w.seq} was deleted from the database (the witness holds it)"
                )
    # One problem per chain is enough to name it: keep the first of each kind.
    return {cid: list(dict.fromkeys(found)) for cid, found in problems.items()}


def check_before_append(
    engine: sa.Engine, witness: WitnessLog, chain_id: str, keys: Mapping[str, Any]
) -> None:
    """Refuse (:class:`ChainCut`) to append to ``chain_id`` if the database lost what the witness saw."""
    latest = witness.latest().get(chain_id)
    if latest is None:
        return
    found = witness_problems(engine, [latest], keys).get(chain_id)
    if found:
        raise ChainCut(
            f"the trace ledger's chain {chain_id!r} does not match its witness ({witness.path}): "
            f"{found[0]}; the broker will not append to it. Restore the database, or verify with "
            "`onceonly ledger verify`."
        )


def governance_witness_problems(
    engine: sa.Engine, heads: Iterable[Witnessed], keys: Mapping[str, Any]
) -> list[str]:
    """What the database contradicts in the witnessed heads of the governance log: entries cut
    from its end (or the whole log deleted), or an entry there that is not the one witnessed."""
    events = _GOVERNANCE_EVENTS
    found: list[str] = []
    with engine.connect() as conn:
        for w in heads:
            if w.chain_id != GOVERNANCE_CHAIN:
                continue
            where = f"witnessed governance entry {w.seq}"
            bad = _signed(w, keys)
            if bad:
                found.append(f"{where}: {bad}")
                continue
            held = conn.execute(sa.select(events.c.hash).where(events.c.seq == w.seq)).scalar()
            if held is None:
                found.append(
                    f"the governance log is cut at its tail: the witness saw entry {w.seq}, the database "
                    "does not hold it (entries deleted, or an older copy of the database restored)"
                )
            elif held != w.head_hash:
                found.append(f"{where}: the database holds another entry there (edited and re-signed?)")
    return list(dict.fromkeys(found))
