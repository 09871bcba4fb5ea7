"""The governance log: every governance change, hash-chained and signed, in the same transaction as
the change itself.

An entry says who acted (organisation, role, how authenticated), what they did (``action``), to
what (``subject``: an organisation code, an agreement and version), with the change's content
(``body``, JSON) and when. Its hash covers all of that, its place (``seq``) and the previous entry's
hash; the broker signs the hash with its key (a compact JWS, ``kid`` in the header). The entry is
written in the transaction that applies the change: a change that cannot be logged is not applied,
and an entry is never written for a change that was not. :func:`verify_governance_log` recomputes
the chain and checks every signature; ``onceonly ledger verify`` runs it beside the trace ledger's.

Changes are serialised by :func:`in_logged_transaction`, which takes the database's write lock
for the log first (PostgreSQL: an advisory lock; SQLite: its write lock); should two writers still
collide on the next ``seq`` (unique), the second's whole transaction — change included — is retried.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa

from onceonly.broker.chain import signature_problem
from onceonly.broker.storage import GovernanceEventRow

__all__ = [
    "GENESIS",
    "GOVERNANCE_TYPE",
    "Actor",
    "GovernanceLog",
    "GovernanceLogReport",
    "LoggedEvent",
    "body_text",
    "event_hash",
    "verify_governance_log",
]

GENESIS = "0" * 64
GOVERNANCE_TYPE = "onceonly-governance+jwt"
_EVENTS: sa.Table = GovernanceEventRow.__table__  # type: ignore[attr-defined]
_HASHED = (
    "seq",
    "at",
    "actor_organization_id",
    "actor_role",
    "actor_via",
    "action",
    "subject",
    "body",
    "prev_hash",
)
_ATTEMPTS = 5

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a governance change: an organisation, acting in a role, authenticated how."""

    organization_id: str
    role: str
    via: str


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One entry of the governance log, as stored."""

    seq: int
    at: dt.datetime
    actor: Actor
    action: str
    subject: str
    body: Mapping[str, Any]
    prev_hash: str
    hash: str
    signature: str


def _canonical_time(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(values: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an entry's hashed columns (``body`` is its JSON text)."""
    canonical = {name: _canonical_time(values[name]) if name == "at" else values[name] for name in _HASHED}
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def body_text(body: Mapping[str, Any]) -> str:
    """An entry's content as the log holds it: canonical JSON, keys sorted."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


class GovernanceLog:
    """Appends signed entries to the governance log (``sign`` makes a compact JWS over claims)."""

    def __init__(self, sign: Callable[[Mapping[str, Any]], str]) -> None:
        self._sign = sign

    def append(
        self,
        conn: sa.Connection,
        actor: Actor,
        action: str,
        subject: str,
        body: Mapping[str, Any],
        at: dt.datetime,
    ) -> LoggedEvent:
        """Add an entry in ``conn``'s transaction (the caller commits it with the change)."""
        head = conn.execute(
            sa.select(_EVENTS.c.seq, _EVENTS.c.hash).order_by(_EVENTS.c.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (head[0] + 1, head[1]) if head is not None else (1, GENESIS)
        values: dict[str, Any] = {
            "seq": seq,
            "at": at,
            "actor_organization_id": actor.organization_id,
            "actor_role": actor.role,
            "actor_via": actor.via,
            "action": action,
            "subject": subject,
            "body": body_text(body),
            "prev_hash": prev_hash,
        }
        values["hash"] = event_hash(values)
        values["signature"] = self._sign({"seq": seq, "hash": values["hash"]})
        conn.execute(sa.insert(_EVENTS), values)
        return LoggedEvent(
            seq, at, actor, action, subject, dict(body), prev_hash, values["hash"], values["signature"]
        )

    @staticmethod
    def read_last(conn: sa.Connection) -> list[LoggedEvent]:
        """The newest entry (none in an empty log)."""
        rows = conn.execute(sa.select(_EVENTS).order_by(_EVENTS.c.seq.desc()).limit(1))
        return [_event(dict(r._mapping)) for r in rows]

    @staticmethod
    def read(conn: sa.Connection, *, after_seq: int = 0, limit: int = 100) -> list[LoggedEvent]:
        """Entries after ``after_seq``, oldest first, at most ``limit``."""
        rows = conn.execute(
            sa.select(_EVENTS).where(_EVENTS.c.seq > after_seq).order_by(_EVENTS.c.seq).limit(limit)
        )
        return [_event(dict(r._mapping)) for r in rows]


def in_logged_transaction(engine: sa.Engine, work: Callable[[sa.Connection], T]) -> T:
    """Run ``work`` (a change and its log entry) in one transaction, retried when another writer
    took the log's next place first. Nothing of a failed attempt stays."""
    for attempt in range(_ATTEMPTS):
        try:
            with engine.begin() as conn:
                _lock(conn)
                return work(conn)
        except sa.exc.IntegrityError as exc:
            if "seq" not in str(exc.orig) and "governance_events" not in str(exc.orig):
                raise
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


_LOCK_KEY = 0x676F76  # "gov": the PostgreSQL advisory lock of the governance log


def _lock(conn: sa.Connection) -> None:
    """Take the database's write lock for the log before reading anything, so that concurrent
    changes (other threads, other replicas) queue instead of colliding on the log's next place."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.execute(sa.text("DELETE FROM governance_events WHERE 0 = 1"))  # takes SQLite's write lock


def _event(m: Mapping[str, Any]) -> LoggedEvent:
    return LoggedEvent(
        seq=int(m["seq"]),
        at=m["at"],
        actor=Actor(m["actor_organization_id"], m["actor_role"], m["actor_via"]),
        action=m["action"],
        subject=m["subject"],
        body=orjson.loads(m["body"]),
        prev_hash=m["prev_hash"],
        hash=m["hash"],
        signature=m["signature"],
    )


# --- verification -----------------------------------------------------------------------------


@dataclass
class GovernanceLogReport:
    """What verification found in the governance log; ``problems`` is empty when intact."""

    events: int = 0
    last_seq: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems


def verify_governance_log(engine: sa.Engine, keys: Mapping[str, Any]) -> GovernanceLogReport:
    """Recompute the chain and check each signature; name the first bad entry."""
    report = GovernanceLogReport()
    expected = (0, GENESIS)
    with engine.connect() as conn:
        rows = conn.execution_options(yield_per=1000).execute(sa.select(_EVENTS).order_by(_EVENTS.c.seq))
        for row in rows:
            m = dict(row._mapping)
            report.events += 1
            report.last_seq = m["seq"]
            if report.problems:
                continue
            where = f"governance entry {m['seq']} ({m['action']} {m['subject']})"
            if m["seq"] != expected[0] + 1:
                report.problems.append(f"{where}: expected entry {expected[0] + 1}; entries are missing")
            elif m["prev_hash"] != expected[1]:
                report.problems.append(
                    f"{where}: does not link to the entry before it (inserted or reordered)"
                )
            elif event_hash(m) != m["hash"]:
                report.problems.append(f"{where}: content does not match its hash (edited)")
            else:
                bad = _signature_problem(m, keys)
                if bad:
                    report.problems.append(f"{where}: {bad}")
            expected = (m["seq"], m["hash"])
    return report


def _signature_problem(m: Mapping[str, Any], keys: Mapping[str, Any]) -> str:
    return signature_problem(
        m["signature"],
        keys,
        {"seq": m["seq"], "hash": m["hash"]},
        "the entry differs from what was signed (re-hashed without the broker's key)",
    )
