"""The trace ledger: the durable, purpose-tagged record of every request.

"No answer without a trace": ``SqlTraceLedger.append`` returns only once the record is
committed. Writes go through one dedicated thread that commits whatever is queued in a
single transaction (group commit), so throughput does not pay one fsync per request.

The ledger never holds raw personal identifiers or attested values: a ``TraceRecord``
carries a keyed pseudonym of the subject (``SubjectPseudonymiser``), and the stored reply
(which does contain claims) is sealed with AES-GCM (``ReplyCipher``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from onceonly import metrics
from onceonly.broker.chain import ChainHead, checkpoint_values, load_head, reply_hash
from onceonly.broker.domain import (
    AgreementRef,
    CheckStatus,
    Decision,
    DenialReason,
    DocumentType,
    LegalBasisKind,
    OfficerIdentification,
    StoredReply,
    TracedOutcome,
    TraceRecord,
)
from onceonly.broker.errors import DuplicateRequest, LedgerUnavailable
from onceonly.broker.storage import CheckpointRow, ReplyRow, TraceRow
from onceonly.broker.witness import WitnessLog

__all__ = ["ReplyCipher", "SqlTraceLedger", "SubjectPseudonymiser", "load_or_create_key"]

log = logging.getLogger(__name__)

_KEY_BYTES = 32
_NONCE_BYTES = 12
_TRACES: sa.Table = TraceRow.__table__  # type: ignore[attr-defined]
_REPLIES: sa.Table = ReplyRow.__table__  # type: ignore[attr-defined]
_IDS_PER_QUERY = 500
"""Request ids per ``IN (…)`` when reading many stored replies (well under every driver's limit)."""
_CHECKPOINTS: sa.Table = CheckpointRow.__table__  # type: ignore[attr-defined]


KEYED_DIGEST_PREFIX = "k1:"


def rekey_reply_digests(engine: sa.Engine, pseudonymiser: SubjectPseudonymiser) -> int:
    """Key the request digests of stored replies written before digests were keyed; return how many.

    Those digests were SHA-256 of a body that names the subject; keyed the same way as new ones,
    retries of those requests are still recognised. Idempotent (keyed digests carry a prefix).
    Trace records written then keep theirs (they are hash-chained) until purged by retention.
    """
    done = 0
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(_REPLIES.c.organization_id, _REPLIES.c.request_id, _REPLIES.c.request_digest).where(
                sa.not_(_REPLIES.c.request_digest.startswith(KEYED_DIGEST_PREFIX))
            )
        ).all()
        for org, request_id, digest in rows:
            conn.execute(
                sa.update(_REPLIES)
                .where(_REPLIES.c.organization_id == org, _REPLIES.c.request_id == request_id)
                .values(request_digest=pseudonymiser.request_digest(digest))
            )
            done += 1
    return done


def load_or_create_key(path: str | Path, size: int = _KEY_BYTES) -> bytes:
    """Read a raw secret key file, creating it (mode 0600, random bytes) at first use.

    Creation is atomic (write a temporary file, then hard-link it into place), so two
    processes starting together agree on one key.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(size))
                f.flush()
                os.fsync(f.fileno())
            # If another process won the race, its key is the one to use.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != size:
        raise ValueError(f"key file {path} holds {len(key)} bytes, expected {size}")
    return key


class ReplyCipher:
    """Seals stored replies with AES-256-GCM, bound to their (organisation, request id)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise ValueError(f"ReplyCipher needs a {_KEY_BYTES * 8}-bit key")
        self._aead = AESGCM(key)

    @classmethod
    def from_key_file(cls, path: str | Path) -> ReplyCipher:
        """Use the key in ``path``, creating it at first use."""
        return cls(load_or_create_key(path))

    @staticmethod
    def aad(organization_id: str, request_id: str) -> bytes:
        """Associated data: a sealed reply cannot be replayed under another request."""
        return f"{organization_id}\x00{request_id}".encode()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt; the result is a random 12-byte nonce followed by ciphertext and tag."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt what ``seal`` produced; raises ``cryptography.exceptions.InvalidTag``."""
        return self._aead.decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], aad)


class SubjectPseudonymiser:
    """Keyed pseudonyms of subjects (HMAC-SHA256), so traces can be joined per resident.

    Without the key, which is kept apart from the database, a pseudonym cannot be
    reversed by hashing every possible document number.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("SubjectPseudonymiser needs a key of at least 128 bits")
        self._key = key

    @classmethod
    def from_key_file(cls, path: str | Path) -> SubjectPseudonymiser:
        """Use the key in ``path`` (e.g. ``var/keys/ledger.key``), creating it at first use."""
        return cls(load_or_create_key(path))

    def pseudonym(self, subject_key: str) -> str:
        """The hex pseudonym of ``SubjectId.key()``."""
        return hmac.new(self._key, subject_key.encode(), hashlib.sha256).hexdigest()

    def request_digest(self, unkeyed: str) -> str:
        """The stored form of a request's digest: keyed, so that it cannot be tested against a
        guessed subject without the key (``k1:`` names the scheme)."""
        mac = hmac.new(self._key, b"onceonly request digest\x00" + unkeyed.encode(), hashlib.sha256)
        return KEYED_DIGEST_PREFIX + mac.hexdigest()


@dataclass(slots=True)
class _Pending:
    """One queued append and the caller waiting for it."""

    trace: dict[str, Any]
    reply: dict[str, Any] | None
    future: asyncio.Future[None]
    loop: asyncio.AbstractEventLoop
    queued_at: float
    """``time.monotonic()`` when the caller handed the record over."""


_STOP = object()


class SqlTraceLedger:
    """The trace ledger over a SQLAlchemy engine, with a single group-commit writer thread.

    ``append`` fails with ``DuplicateRequest`` for a reused (organisation, request id) and
    with ``LedgerUnavailable`` when the database cannot record; the writer survives such
    failures, so the ledger recovers on its own once the database is back.
    """

    def __init__(
        self,
        engine: sa.Engine,
        cipher: ReplyCipher,
        *,
        max_batch: int = 256,
        chain_id: str = "main",
        sign_checkpoint: Callable[[Mapping[str, Any]], str] | None = None,
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        witness: WitnessLog | None = None,
        commit_window_s: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if not 0 <= commit_window_s <= 0.1:
            raise ValueError("commit_window_s must be between 0 and 0.1 s")
        if not chain_id or len(chain_id) > 64:
            raise ValueError("chain_id must be 1 to 64 characters")
        self._engine = engine
        self._cipher = cipher
        self._max_batch = max_batch
        self.chain_id = chain_id
        self._sign_checkpoint = sign_checkpoint
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval_s = checkpoint_interval_s
        self._witness = witness
        self._commit_window_s = commit_window_s
        self.commits = 0
        """Transactions that committed records so far (each record is in exactly one)."""
        self._gap_s = float("inf")  # recent time between records handed over (moving average)
        self._last_queued_at: float | None = None
        self._head: ChainHead | None = None  # loaded by the writer; None after a failed write
        self._traces_insert = _BulkInsert(_TRACES, engine.dialect)
        self._replies_insert = _BulkInsert(_REPLIES, engine.dialect)
        dbapi = engine.dialect.dbapi
        # Errors that concern one row (a reused request id), not the database as a whole.
        self._row_errors: tuple[type[Exception], ...] = (sa.exc.IntegrityError, sa.exc.DataError)
        if dbapi is not None:
            self._row_errors += (dbapi.IntegrityError, dbapi.DataError)
        self._raw: Any = None  # the writer's own connection, kept open between batches
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders "closed?" checks against the stop marker
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> None:
        """Start the writer thread (idempotent; ``append`` starts it if needed)."""
        with self._lock:
            self._start_locked()

    def _start_locked(self) -> None:
        if self._closed:
            raise LedgerUnavailable("the trace ledger is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="trace-ledger-writer", daemon=True)
            self._thread.start()

    async def append(self, record: TraceRecord, reply: StoredReply | None = None) -> None:
        """Record a trace (and the reply to keep for retries); return once committed."""
        trace = _trace_values(record)
        sealed = None if reply is None else self._reply_values(record, reply)
        if sealed is not None:
            trace["reply_hash"] = reply_hash(sealed)
        loop = asyncio.get_running_loop()
        pending = _Pending(trace, sealed, loop.create_future(), loop, time.monotonic())
        with self._lock:
            self._start_locked()
            self._queue.put(pending)
        await pending.future

    async def find_reply(self, organization_id: str, request_id: str) -> StoredReply | None:
        """The reply stored for a request, decrypted; None if the request is not recorded."""
        return await asyncio.to_thread(self._find_reply, organization_id, request_id)

    async def find_replies(self, organization_id: str, request_ids: Sequence[str]) -> dict[str, StoredReply]:
        """The replies stored for these requests (those recorded), decrypted, by request id: a few
        queries for a whole job rather than one per subject."""
        return await asyncio.to_thread(self._find_replies, organization_id, list(request_ids))

    async def has_replies(self, organization_id: str, prefix: str) -> bool:
        """Whether a reply is stored for a request id of ``organization_id`` starting with ``prefix``
        (an index range, not a scan)."""
        return await asyncio.to_thread(self._has_replies, organization_id, prefix)

    async def get_trace(self, trace_id: str) -> TraceRecord | None:
        """The trace record with this id, if committed."""
        return await asyncio.to_thread(self._get_trace, trace_id)

    def count(self) -> int:
        """The number of committed trace records (for tests and health checks)."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(_TRACES)).scalar_one())

    async def close(self) -> None:
        """Write everything queued, then stop the writer. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._thread is not None:
                    self._queue.put(_STOP)
            thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join)

    # --- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        self._sign_unsigned_tail()
        while True:
            try:
                item = self._queue.get(timeout=self._checkpoint_interval_s)
            except queue.Empty:
                self._checkpoint_if_due()
                continue
            if item is _STOP:
                break
            batch, stop = self._collect(item)  # type: ignore[arg-type]
            try:
                self._write_batch(batch)
            except Exception as exc:  # never let the writer die with callers waiting
                log.exception("trace ledger writer failed")
                self._head = None
                _settle(batch, _unavailable(exc))
            self._checkpoint_if_due()
            if stop:
                break
        self._checkpoint_if_due(force=True)
        self._drop_connection()

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The batch that ``first`` opens, and whether the stop marker came after it.

        Everything already waiting joins it. With a commit window, while records arrive closer
        together than the window, the writer also waits until the window has passed since
        ``first`` was handed over, so that one commit (one sync) serves several records; when
        they arrive further apart nobody would join, and the batch is written at once.
        """
        batch = [first]
        deadline = None
        if self._commit_window_s and self._gap_s < self._commit_window_s:
            deadline = first.queued_at + self._commit_window_s
        stop = False
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic() if deadline is not None else 0.0
                if wait <= 0:
                    break
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if item is _STOP:
                stop = True
                break
            batch.append(item)  # type: ignore[arg-type]
        for p in batch:
            if self._last_queued_at is not None:
                gap = max(0.0, p.queued_at - self._last_queued_at)
                self._gap_s = gap if self._gap_s == float("inf") else 0.8 * self._gap_s + 0.2 * gap
            self._last_queued_at = p.queued_at
        return batch, stop

    def _sign_unsigned_tail(self) -> None:
        """Sign what a previous run left unsigned (it was killed before its next checkpoint)."""
        if self._sign_checkpoint is None:
            return
        try:
            with self._engine.connect() as conn:
                head = load_head(conn, self.chain_id)
                signed = conn.execute(
                    sa.select(sa.func.max(_CHECKPOINTS.c.seq)).where(_CHECKPOINTS.c.chain_id == self.chain_id)
                ).scalar()
        except Exception as exc:  # the database is down: the next checkpoint covers the tail
            log.warning("cannot read the head of chain %s: %s", self.chain_id, exc)
            return
        if head.seq > (signed or 0):
            self._head = head
            self._since_checkpoint = head.seq - (signed or 0)
            self._checkpoint_if_due(force=True)

    def _chain_head(self) -> ChainHead:
        if self._head is None:
            with self._engine.connect() as conn:
                self._head = load_head(conn, self.chain_id)
        return self._head

    def _write_batch(self, batch: list[_Pending]) -> None:
        try:
            head = self._chain_head()
        except Exception as exc:
            log.warning("trace ledger cannot read the head of chain %s: %s", self.chain_id, exc)
            _settle(batch, _unavailable(exc))
            return
        before = ChainHead(head.seq, head.hash)
        for p in batch:
            head.link(p.trace, self.chain_id)
        started = time.perf_counter()
        try:
            self._insert(batch)
        except self._row_errors as exc:
            self._head = before
            # One bad row (usually a reused request id) must not fail its batch-mates.
            if len(batch) == 1:
                _settle(batch, self._integrity_failure(batch[0], exc))
            else:
                self._write_one_by_one(batch)
        except Exception as exc:
            self._head = None  # the database is failing: read the head again when it is back
            log.warning("trace ledger cannot write %d records: %s", len(batch), exc)
            _settle(batch, _unavailable(exc))
        else:
            metrics.ledger_commit(len(batch), (time.perf_counter() - started) * 1000)
            self.commits += 1
            self._since_checkpoint += len(batch)
            _settle(batch, None)

    def _write_one_by_one(self, batch: list[_Pending]) -> None:
        for i, p in enumerate(batch):
            try:
                head = self._chain_head()
                before = ChainHead(head.seq, head.hash)
                head.link(p.trace, self.chain_id)
                # A fresh transaction per record: on PostgreSQL a failed statement spoils its transaction.
                self._insert([p])
            except self._row_errors as exc:
                self._head = before
                _settle([p], self._integrity_failure(p, exc))
            except Exception as exc:
                # The database itself is failing: do not wait a busy timeout per row.
                self._head = None
                log.warning("trace ledger cannot write %d records: %s", len(batch) - i, exc)
                _settle(batch[i:], _unavailable(exc))
                return
            else:
                self.commits += 1
                self._since_checkpoint += 1
                _settle([p], None)

    def _insert(self, batch: list[_Pending]) -> None:
        """Insert the batch's records and replies in one transaction."""
        reused = self._raw is not None
        try:
            self._insert_once(batch)
        except self._row_errors:
            raise
        except Exception:
            if not reused:
                raise
            # A kept connection may have died while idle (a server restart, a cut network):
            # nothing was committed on it, so try once more on a fresh one.
            self._insert_once(batch)

    def _insert_once(self, batch: list[_Pending]) -> None:
        with self._transaction() as cursor:
            self._traces_insert.execute(cursor, [p.trace for p in batch])
            replies = [p.reply for p in batch if p.reply is not None]
            if replies:
                self._replies_insert.execute(cursor, replies)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One transaction on the writer's own DB-API connection (no pool round trip per batch).

        After any failure the connection is dropped, so a database that went away and came
        back is reached through a fresh connection.
        """
        if self._raw is None:
            self._raw = self._engine.raw_connection()
        raw = self._raw
        cursor = raw.cursor()
        try:
            yield cursor
            raw.commit()
        except BaseException:
            self._drop_connection()
            raise
        finally:
            with contextlib.suppress(Exception):
                cursor.close()

    def _drop_connection(self) -> None:
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.rollback()
            with contextlib.suppress(Exception):
                raw.invalidate()  # never hand a connection in an unknown state back to the pool

    def _checkpoint_if_due(self, *, force: bool = False) -> None:
        """Sign the chain head if N records or T seconds passed since the last checkpoint."""
        if self._sign_checkpoint is None or self._since_checkpoint == 0 or self._head is None:
            return
        due = self._since_checkpoint >= self._checkpoint_every or (
            time.monotonic() - self._last_checkpoint >= self._checkpoint_interval_s
        )
        if not (due or force):
            return
        try:
            values = checkpoint_values(
                self.chain_id, self._head, dt.datetime.now(dt.UTC), self._sign_checkpoint
            )
            with self._engine.begin() as conn:
                conn.execute(sa.insert(_CHECKPOINTS), values)
        except Exception as exc:  # the records are durable; the next checkpoint covers them
            log.warning("cannot write a checkpoint of chain %s: %s", self.chain_id, exc)
            return
        if self._witness is not None:
            try:
                self._witness.append(
                    self.chain_id, ChainHead(values["seq"], values["head_hash"]), values["signature"]
                )
            except OSError as exc:  # the checkpoint stands in the database; the next one is witnessed
                log.error("cannot append to the ledger's witness %s: %s", self._witness.path, exc)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    def _integrity_failure(self, p: _Pending, exc: Exception) -> Exception:
        org, request_id = p.trace["consumer_organization_id"], p.trace["request_id"]
        try:
            with self._engine.connect() as conn:
                exists = conn.execute(
                    sa.select(_TRACES.c.id).where(
                        _TRACES.c.consumer_organization_id == org, _TRACES.c.request_id == request_id
                    )
                ).first()
        except Exception as lookup_exc:
            return _unavailable(lookup_exc)
        if exists is not None:
            return DuplicateRequest(request_id)
        # Not a reused request id: most likely another process appends to this same chain.
        log.error(
            "chain %s: position taken by another writer; give each broker replica its own chain id",
            self.chain_id,
        )
        self._head = None
        log.error("trace %s refused by the database: %s", p.trace["trace_id"], exc)
        return _unavailable(exc)

    # --- conversions and reads ---------------------------------------------------------

    def _reply_values(self, record: TraceRecord, reply: StoredReply) -> dict[str, Any]:
        if (reply.organization_id, reply.request_id) != (record.consumer_organization_id, record.request_id):
            raise ValueError("the reply belongs to another request than the trace record")
        aad = ReplyCipher.aad(reply.organization_id, reply.request_id)
        return {
            "organization_id": reply.organization_id,
            "request_id": reply.request_id,
            "request_digest": reply.request_digest,
            "kind": reply.kind,
            "payload": self._cipher.seal(reply.payload, aad),
            "created_at": _utc(record.created_at),
        }

    def _find_reply(self, organization_id: str, request_id: str) -> StoredReply | None:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    sa.select(_REPLIES).where(
                        _REPLIES.c.organization_id == organization_id, _REPLIES.c.request_id == request_id
                    )
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        if row is None:
            return None
        try:
            payload = self._cipher.open(row.payload, ReplyCipher.aad(organization_id, request_id))
        except (InvalidTag, ValueError):
            # Tampered with, truncated, or sealed under another key: never hand it out.
            raise LedgerUnavailable(f"stored reply for request {request_id!r} fails authentication") from None
        return StoredReply(organization_id, request_id, row.request_digest, row.kind, payload)

    def _find_replies(self, organization_id: str, request_ids: list[str]) -> dict[str, StoredReply]:
        rows: list[Any] = []
        try:
            with self._engine.connect() as conn:
                for start in range(0, len(request_ids), _IDS_PER_QUERY):
                    chunk = request_ids[start : start + _IDS_PER_QUERY]
                    rows += conn.execute(
                        sa.select(_REPLIES).where(
                            _REPLIES.c.organization_id == organization_id, _REPLIES.c.request_id.in_(chunk)
                        )
                    ).all()
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        found = {}
        for row in rows:
            try:
                payload = self._cipher.open(row.payload, ReplyCipher.aad(organization_id, row.request_id))
            except (InvalidTag, ValueError):
                raise LedgerUnavailable(
                    f"stored reply for request {row.request_id!r} fails authentication"
                ) from None
            found[row.request_id] = StoredReply(
                organization_id, row.request_id, row.request_digest, row.kind, payload
            )
        return found

    def _has_replies(self, organization_id: str, prefix: str) -> bool:
        if not prefix:
            raise ValueError("a prefix is required")
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # the first id past every one with the prefix
        try:
            with self._engine.connect() as conn:
                found = conn.execute(
                    sa.select(_REPLIES.c.request_id)
                    .where(
                        _REPLIES.c.organization_id == organization_id,
                        _REPLIES.c.request_id >= prefix,
                        _REPLIES.c.request_id < upper,
                    )
                    .limit(1)
                ).first()
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        return found is not None

    def _get_trace(self, trace_id: str) -> TraceRecord | None:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(sa.select(_TRACES).where(_TRACES.c.trace_id == trace_id)).first()
        except sa.exc.SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        return None if row is None else trace_from_row(row._mapping)


class _BulkInsert:
    """An INSERT compiled once for the dialect, executed with the driver's own executemany.

    The writer thread holds the GIL while it prepares rows; going straight to the driver with
    rows already in its parameter form keeps that time short, so the event loop thread that
    answers requests waits less. Column types are honoured through their bind processors.
    """

    def __init__(self, table: sa.Table, dialect: sa.Dialect):
        columns = [c for c in table.columns if not (c.primary_key and c.autoincrement is True)]
        if table.c.get("id") is not None and table.c.id.primary_key:
            columns = [c for c in columns if c.name != "id"]
        stmt = sa.insert(table).values({c.name: sa.bindparam(c.name) for c in columns})
        compiled = stmt.compile(dialect=dialect)
        self._sql = compiled.string
        self._positional = compiled.positiontup
        processors = {c.name: c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns}
        self._processors = [(name, proc) for name, proc in processors.items() if proc is not None]

    def execute(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        prepared = []
        for row in rows:
            values = dict(row)
            for name, proc in self._processors:
                values[name] = proc(values[name])
            prepared.append(tuple(values[n] for n in self._positional) if self._positional else values)
        cursor.executemany(self._sql, prepared)


def _settle(batch: list[_Pending], exc: BaseException | None) -> None:
    """Resolve the callers' futures on their own loops, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = defaultdict(list)
    for p in batch:
        by_loop[p.loop].append(p.future)
    for loop, futures in by_loop.items():
        # RuntimeError: the caller's loop is closed, so nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, futures, exc)


def _resolve(futures: list[asyncio.Future[None]], exc: BaseException | None) -> None:
    for f in futures:
        if f.done():  # the caller was cancelled; the record is committed all the same
            continue
        if exc is None:
            f.set_result(None)
        elif isinstance(exc, DuplicateRequest):
            f.set_exception(exc)
        else:
            # One exception object per caller: each await writes its own traceback into it.
            cause = exc.__cause__ if isinstance(exc, LedgerUnavailable) else exc
            err = LedgerUnavailable(exc.cause) if isinstance(exc, LedgerUnavailable) else _unavailable(exc)
            err.__cause__ = cause
            f.set_exception(err)


def _unavailable(exc: BaseException) -> LedgerUnavailable:
    err = LedgerUnavailable(f"the trace ledger cannot record: {type(exc).__name__}")
    err.__cause__ = exc
    return err


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("trace timestamps must be timezone-aware")
    return value.astimezone(dt.UTC)


def _trace_values(r: TraceRecord) -> dict[str, Any]:
    return {
        "trace_id": r.trace_id,
        "request_id": r.request_id,
        "request_digest": r.request_digest,
        "created_at": _utc(r.created_at),
        "consumer_organization_id": r.consumer_organization_id,
        "consumer_unit": r.consumer_unit,
        "officer_id": r.officer_id,
        "procedure_code": r.procedure_code,
        "purpose_text": r.purpose_text,
        "case_file_id": r.case_file_id,
        "legal_basis_kind": r.legal_basis_kind.value,
        "legal_basis_reference": r.legal_basis_reference,
        "subject_document_type": r.subject_document_type.value,
        "subject_ref": r.subject_ref,
        "certificate_type_ids": orjson.dumps(list(r.certificate_type_ids)).decode(),
        "decision": r.decision.value,
        "denial_reason": None if r.denial_reason is None else r.denial_reason.value,
        "denial_detail": r.denial_detail,
        "outcomes": orjson.dumps(
            [
                {
                    "certificate_type_id": o.certificate_type_id,
                    "provider_id": o.provider_id,
                    "status": o.status.value,
                    "latency_ms": o.latency_ms,
                    **({"evidence_sha256": o.evidence_digest} if o.evidence_digest else {}),
                }
                for o in r.outcomes
            ]
        ).decode(),
        "duration_ms": r.duration_ms,
        "officer_identification": r.officer_identification.value if r.officer_identification else "",
        "reply_hash": "",  # set by ``append`` when a reply is stored with the record
        "agreements": orjson.dumps(
            [[g.certificate_type_id, g.agreement_id, g.version] for g in r.agreements]
        ).decode()
        if r.agreements
        else "",
    }


def trace_from_row(m: Any) -> TraceRecord:
    """A ``trace_records`` row (a mapping of its columns) as a domain ``TraceRecord``."""
    return TraceRecord(
        trace_id=m["trace_id"],
        request_id=m["request_id"],
        request_digest=m["request_digest"],
        created_at=m["created_at"],
        consumer_organization_id=m["consumer_organization_id"],
        consumer_unit=m["consumer_unit"],
        officer_id=m["officer_id"],
        procedure_code=m["procedure_code"],
        purpose_text=m["purpose_text"],
        case_file_id=m["case_file_id"],
        legal_basis_kind=LegalBasisKind(m["legal_basis_kind"]),
        legal_basis_reference=m["legal_basis_reference"],
        subject_document_type=DocumentType(m["subject_document_type"]),
        subject_ref=m["subject_ref"],
        certificate_type_ids=tuple(json.loads(m["certificate_type_ids"])),
        decision=Decision(m["decision"]),
        denial_reason=None if m["denial_reason"] is None else DenialReason(m["denial_reason"]),
        denial_detail=m["denial_detail"],
        outcomes=tuple(
            TracedOutcome(
                o["certificate_type_id"],
                o["provider_id"],
                CheckStatus(o["status"]),
                int(o["latency_ms"]),
                o.get("evidence_sha256", ""),
            )
            for o in json.loads(m["outcomes"])
        ),
        duration_ms=int(m["duration_ms"]),
        officer_identification=OfficerIdentification(m["officer_identification"])
        if m.get("officer_identification")
        else None,
        agreements=tuple(AgreementRef(c, a, int(v)) for c, a, v in json.loads(m.get("agreements") or "[]")),
    )
