"""The tamper-evident side of the ledger: hash chains, signed checkpoints, verification, purge.

Each broker replica appends to its own chain (``chain_id``), so no replica waits on another's
lock. A record's hash covers every column but the row id and the hash itself, including its
place (``seq``) and the hash of the record before it (``prev_hash``); the first record of a
chain links to :data:`GENESIS`. Every N records or T seconds the writer signs a checkpoint of
the chain head with the broker's key. :func:`verify_ledger` recomputes every chain and names
the first bad record; :func:`purge_before` removes old records up to a checkpoint, which
stays as the anchor of what remains.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
import sqlalchemy as sa

from onceonly.broker.storage import CheckpointRow, ReplyRow, TraceRow

GENESIS = "0" * 64
CHECKPOINT_TYPE = "onceonly-checkpoint+jwt"
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_CHECKPOINTS: sa.Table = CheckpointRow.__table__  # type: ignore[attr-defined]
_REPLIES: sa.Table = ReplyRow.__table__  # type: ignore[attr-defined]
HASHED_COLUMNS: tuple[str, ...] = tuple(
    c.name for c in _TRACES.columns if c.name not in ("id", "record_hash")
)
ADDED_LATER: dict[str, Any] = {"officer_identification": "", "reply_hash": "", "agreements": ""}
"""Columns added after records were first chained, with the value older records have: hashed
only when a record sets them, so that adding one leaves every earlier hash valid."""


def _canonical(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def record_hash(values: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a record's hashed columns."""
    body = {
        name: _canonical(values[name])
        for name in HASHED_COLUMNS
        if name not in ADDED_LATER or values.get(name, ADDED_LATER[name]) != ADDED_LATER[name]
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def reply_hash(reply: Mapping[str, Any]) -> str:
    """SHA-256 over a stored reply row as written (its payload sealed): recorded in the trace
    record the reply was stored with, so the chain covers stored replies too."""
    body = {
        "organization_id": reply["organization_id"],
        "request_id": reply["request_id"],
        "request_digest": reply["request_digest"],
        "kind": reply["kind"],
        "payload": bytes(reply["payload"]).hex(),
        "created_at": _canonical(reply["created_at"]),
    }
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class ChainHead:
    """Where a chain ends: the last position and its hash."""

    seq: int = 0
    hash: str = GENESIS

    def link(self, values: dict[str, Any], chain_id: str) -> None:
        """Give ``values`` the next place in the chain and advance the head."""
        values["chain_id"] = chain_id
        values["seq"] = self.seq + 1
        values["prev_hash"] = self.hash
        values["record_hash"] = record_hash(values)
        self.seq, self.hash = values["seq"], values["record_hash"]


def load_head(conn: sa.Connection, chain_id: str) -> ChainHead:
    """The head of ``chain_id``: its last record, or its last checkpoint if purged to it."""
    row = conn.execute(
        sa.select(_TRACES.c.seq, _TRACES.c.record_hash)
        .where(_TRACES.c.chain_id == chain_id)
        .order_by(_TRACES.c.seq.desc())
        .limit(1)
    ).first()
    checkpoint = conn.execute(
        sa.select(_CHECKPOINTS.c.seq, _CHECKPOINTS.c.head_hash)
        .where(_CHECKPOINTS.c.chain_id == chain_id)
        .order_by(_CHECKPOINTS.c.seq.desc())
        .limit(1)
    ).first()
    candidates = [ChainHead(r[0], r[1]) for r in (row, checkpoint) if r is not None]
    return max(candidates, key=lambda h: h.seq, default=ChainHead())


def chain_id_for(var_dir: Path) -> str:
    """This installation's chain id, kept in ``<var_dir>/ledger/chain-id`` (created at first use)."""
    path = var_dir / "ledger" / "chain-id"
    try:
        return path.read_text("utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        chain_id = f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"
        path.write_text(chain_id + "\n", "utf-8")
        return chain_id


def checkpoint_claims(chain_id: str, head: ChainHead, at: dt.datetime) -> dict[str, Any]:
    return {"chain_id": chain_id, "seq": head.seq, "head_hash": head.hash, "at": _canonical(at)}


def checkpoint_values(
    chain_id: str, head: ChainHead, at: dt.datetime, sign: Callable[[Mapping[str, Any]], str]
) -> dict[str, Any]:
    """A checkpoint row for ``head``, signed with ``sign`` (a compact JWS over its claims)."""
    return {
        "chain_id": chain_id,
        "seq": head.seq,
        "head_hash": head.hash,
        "created_at": at,
        "signature": sign(checkpoint_claims(chain_id, head, at)),
    }


# --- verification -----------------------------------------------------------------------------


def signature_problem(token: str, keys: Mapping[str, Any], expected: Mapping[str, Any], differs: str) -> str:
    """Why ``token`` — a compact JWS (EdDSA) by one of ``keys`` (``kid`` → public key) — does not
    sign the claims ``expected``: an unknown key, a bad signature, or ``differs`` when it signs
    other values. Empty when it does."""
    try:
        kid = str(jwt.get_unverified_header(token).get("kid"))
        key = keys.get(kid)
        if key is None:
            return f"signed by unknown key {kid!r}"
        claims = jwt.decode(token, key, algorithms=["EdDSA"])
    except jwt.InvalidTokenError as exc:
        return f"bad signature ({exc})"
    return differs if any(claims.get(k) != v for k, v in expected.items()) else ""


@dataclass
class ChainReport:
    """What verification found in one chain. ``problems`` is empty for an intact chain."""

    chain_id: str
    records: int = 0
    first_seq: int = 0
    last_seq: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_ledger(
    engine: sa.Engine,
    keys: Mapping[str, Any],
    *,
    unsigned_limit: dt.timedelta | None = None,
    now: dt.datetime | None = None,
) -> list[ChainReport]:
    """Recompute every chain and check every checkpoint; ``keys`` maps ``kid`` to a public key.

    A chain's first problem is the first bad record in chain order: an edited record (its hash
    no longer matches), a deleted one (a gap in ``seq``), an inserted or reordered one (a
    ``prev_hash`` that does not link). Checkpoints must carry a valid signature by a known key
    and agree with the record at their position; one beyond the last record means records at
    the end were removed. A stored reply must match the hash its record holds. With
    ``unsigned_limit``, records older than that which no checkpoint signs are a problem too: a
    running broker signs its head at least every checkpoint interval, so an old unsigned tail
    means checkpoints were deleted (or the broker stopped without signing, e.g. killed).
    """
    reports: dict[str, ChainReport] = {}
    with engine.connect() as conn:
        checkpoints: dict[str, dict[int, Any]] = {}
        for cp in conn.execute(sa.select(_CHECKPOINTS).order_by(_CHECKPOINTS.c.chain_id, _CHECKPOINTS.c.seq)):
            checkpoints.setdefault(cp.chain_id, {})[cp.seq] = cp
        rows = conn.execution_options(yield_per=1000).execute(
            sa.select(_TRACES).order_by(_TRACES.c.chain_id, _TRACES.c.seq)
        )
        current: ChainReport | None = None
        expected = ChainHead()
        for row in rows:
            m = row._mapping
            if current is None or m["chain_id"] != current.chain_id:
                current = reports[m["chain_id"]] = ChainReport(m["chain_id"], first_seq=m["seq"])
                expected = _anchor(current, checkpoints.get(current.chain_id, {}), m["seq"])
            _check_record(current, expected, dict(m))
            expected = ChainHead(m["seq"], m["record_hash"])
            current.records += 1
            current.last_seq = m["seq"]
    for chain_id, cps in checkpoints.items():
        report = reports.setdefault(chain_id, ChainReport(chain_id))
        report.checkpoints = len(cps)
        _check_checkpoints(report, cps, keys, engine)
    _check_replies(engine, reports)
    if unsigned_limit is not None:
        cutoff = (now or dt.datetime.now(dt.UTC)) - unsigned_limit
        for report in reports.values():
            _check_unsigned_tail(engine, report, max(checkpoints.get(report.chain_id, {0: None})), cutoff)
    return sorted(reports.values(), key=lambda r: r.chain_id)


def _check_replies(engine: sa.Engine, reports: dict[str, ChainReport]) -> None:
    """Every stored reply a record names must still be the one stored with it."""
    joined = _TRACES.join(
        _REPLIES,
        sa.and_(
            _REPLIES.c.organization_id == _TRACES.c.consumer_organization_id,
            _REPLIES.c.request_id == _TRACES.c.request_id,
        ),
    )
    query = (
        sa.select(_TRACES.c.chain_id, _TRACES.c.seq, _TRACES.c.trace_id, _TRACES.c.reply_hash, _REPLIES)
        .select_from(joined)
        .where(_TRACES.c.reply_hash != "")
        .order_by(_TRACES.c.chain_id, _TRACES.c.seq)
    )
    with engine.connect() as conn:
        for row in conn.execution_options(yield_per=1000).execute(query):
            m = row._mapping
            if reply_hash(dict(m)) != m["reply_hash"]:
                report = reports.setdefault(m["chain_id"], ChainReport(m["chain_id"]))
                if not any("stored reply" in p for p in report.problems):
                    report.problems.append(
                        f"seq {m['seq']} (trace {m['trace_id']}): the stored reply to request "
                        f"{m['request_id']!r} is not the one stored with it (changed)"
                    )


def _check_unsigned_tail(engine: sa.Engine, report: ChainReport, signed_to: int, cutoff: dt.datetime) -> None:
    """Records past the last checkpoint must be younger than ``cutoff``."""
    if not report.records or report.last_seq <= signed_to:
        return
    first_unsigned = max(signed_to + 1, report.first_seq)
    with engine.connect() as conn:
        written = conn.execute(
            sa.select(_TRACES.c.created_at).where(
                _TRACES.c.chain_id == report.chain_id, _TRACES.c.seq == first_unsigned
            )
        ).scalar()
    if written is None:
        return  # a gap, already named
    if written.tzinfo is None:
        written = written.replace(tzinfo=dt.UTC)
    if written < cutoff:
        report.problems.append(
            f"records from seq {first_unsigned} (written {_canonical(written)}) are older than the "
            f"checkpoint interval allows, yet no checkpoint signs them: checkpoints were deleted, or "
            "the broker was stopped without signing its tail"
        )


def _anchor(report: ChainReport, cps: Mapping[int, Any], first_seq: int) -> ChainHead:
    if report.chain_id == "unchained":
        report.problems.append(
            "records written before hash chaining exist (chain 'unchained'): not verifiable"
        )
        return ChainHead(first_seq - 1, "")
    if first_seq == 1:
        return ChainHead()
    anchor = cps.get(first_seq - 1)
    if anchor is None:
        report.problems.append(
            f"records before seq {first_seq} are missing and no checkpoint at seq {first_seq - 1} "
            "anchors the rest"
        )
        return ChainHead(first_seq - 1, "")
    return ChainHead(anchor.seq, anchor.head_hash)


def _check_record(report: ChainReport, expected: ChainHead, m: Mapping[str, Any]) -> None:
    where = f"seq {m['seq']} (trace {m['trace_id']})"
    if report.problems:
        return  # the first bad record is named; what follows it cannot be trusted anyway
    if m["seq"] != expected.seq + 1:
        report.problems.append(f"{where}: expected seq {expected.seq + 1}; records are missing")
    elif expected.hash and m["prev_hash"] != expected.hash:
        report.problems.append(f"{where}: does not link to the record before it (inserted or reordered)")
    elif record_hash(m) != m["record_hash"]:
        report.problems.append(f"{where}: content does not match its hash (edited)")


def _check_checkpoints(
    report: ChainReport, cps: Mapping[int, Any], keys: Mapping[str, Any], engine: sa.Engine
) -> None:
    for seq, cp in sorted(cps.items()):
        where = f"checkpoint at seq {seq}"
        try:
            kid = str(jwt.get_unverified_header(cp.signature).get("kid"))
            key = keys.get(kid)
            if key is None:
                report.problems.append(f"{where}: signed by unknown key {kid!r}")
                continue
            claims = jwt.decode(cp.signature, key, algorithms=["EdDSA"])
        except jwt.InvalidTokenError as exc:
            report.problems.append(f"{where}: bad signature ({exc})")
            continue
        if claims != checkpoint_claims(cp.chain_id, ChainHead(cp.seq, cp.head_hash), cp.created_at):
            report.problems.append(f"{where}: row differs from what was signed")
        elif report.records and seq > report.last_seq:
            report.problems.append(
                f"{where}: records up to seq {seq} were signed but are missing (truncated)"
            )
        elif seq >= report.first_seq:
            with engine.connect() as conn:
                h = conn.execute(
                    sa.select(_TRACES.c.record_hash).where(
                        _TRACES.c.chain_id == cp.chain_id, _TRACES.c.seq == seq
                    )
                ).scalar()
            if h != cp.head_hash:
                report.problems.append(f"{where}: the record there is not the one that was signed")


# --- retention ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeResult:
    records: int
    replies: int
    anchors: Mapping[str, int]


def purge_before(engine: sa.Engine, cutoff: dt.datetime) -> PurgeResult:
    """Delete records older than ``cutoff``, in each chain only up to its newest checkpoint
    whose record is older than ``cutoff`` (that checkpoint anchors what remains), and the
    stored replies older than ``cutoff``. Returns what was removed.
    """
    records = 0
    anchors: dict[str, int] = {}
    with engine.begin() as conn:
        chains: Iterable[str] = [r[0] for r in conn.execute(sa.select(_CHECKPOINTS.c.chain_id).distinct())]
        for chain_id in chains:
            anchor = conn.execute(
                sa.select(sa.func.max(_CHECKPOINTS.c.seq))
                .select_from(
                    _CHECKPOINTS.join(
                        _TRACES,
                        sa.and_(
                            _TRACES.c.chain_id == _CHECKPOINTS.c.chain_id, _TRACES.c.seq == _CHECKPOINTS.c.seq
                        ),
                    )
                )
                .where(_CHECKPOINTS.c.chain_id == chain_id, _TRACES.c.created_at < cutoff)
            ).scalar()
            if anchor is None:
                continue
            result = conn.execute(
                sa.delete(_TRACES).where(_TRACES.c.chain_id == chain_id, _TRACES.c.seq <= anchor)
            )
            records += result.rowcount or 0
            anchors[chain_id] = anchor
        replies = conn.execute(sa.delete(_REPLIES).where(_REPLIES.c.created_at < cutoff)).rowcount or 0
    return PurgeResult(records, replies, anchors)
