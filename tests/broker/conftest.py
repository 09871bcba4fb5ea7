"""Database fixtures: the storage, ledger and policy-store tests run on SQLite and on PostgreSQL.

``database_url`` is parametrised over both back ends. The PostgreSQL one is a real server:
``make test`` starts one on loopback (``scripts/pg.sh``) and passes its URL in
``ONCEONLY_TEST_POSTGRES_URL``; every test gets a schema of its own, dropped afterwards.
Without that variable the PostgreSQL cases are skipped on a laptop but fail in CI
(``CI=true``), so they are never skipped silently where it counts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from onceonly.broker.storage import TABLE_NAMES, create_engine, init_schema, normalise_url

POSTGRES_URL_ENV = "ONCEONLY_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def postgres_server_url() -> str:
    """The test server's URL; skips (or, in CI, fails) the test when there is none."""
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not url:
        why = f"{POSTGRES_URL_ENV} is not set: run `make test`, which starts a PostgreSQL server"
        if in_ci():
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return url


@contextlib.contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty schema on the server for the duration of the block; a URL that uses it.

    A schema rather than a database: creating one costs milliseconds, not a quarter second,
    and the URL's ``options=-csearch_path=...`` keeps every connection of the test in it.
    """
    schema = f"test_{uuid.uuid4().hex[:20]}"
    admin = create_engine(server_url, busy_timeout_ms=10_000, poolclass=NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = normalise_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each back end: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/var/onceonly.db"
    else:
        with fresh_postgres_database(postgres_server_url()) as url:
            yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL schema, for the tests of PostgreSQL-only behaviour."""
    with fresh_postgres_database(postgres_server_url()) as url:
        yield url


def backend(url: str) -> str:
    return normalise_url(url).get_backend_name()


def stored_bytes(url: str) -> bytes:
    """What the database holds for the broker's tables, as bytes to scan for secrets.

    SQLite: every file of the database (main file, WAL, shared memory), free pages included.
    PostgreSQL: every value of every row, binary values as stored (the server's files are
    not ours to read).
    """
    if backend(url) == "sqlite":
        db = Path(normalise_url(url).database or "")
        return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))
    engine = create_engine(url, poolclass=NullPool)
    chunks: list[bytes] = []
    try:
        with engine.connect() as conn:
            for table in sorted(TABLE_NAMES):
                for row in conn.execute(sa.text(f"SELECT * FROM {table}")):
                    chunks.extend(v if isinstance(v, bytes) else str(v).encode() for v in row)
    finally:
        engine.dispose()
    return b"\n".join(chunks)


class TcpProxy:
    """A loopback TCP relay to a server that a test can cut and restore.

    ``cut()`` drops every relayed connection and refuses new ones (as a stopped or
    unreachable database would); ``restore()`` listens again on the same port.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        with self._lock:
            self._listener = listener
        self._acceptor = self._spawn(self._accept, listener)

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if self._acceptor is not None:
            # A thread inside accept() keeps the socket listening: wait for it to leave.
            self._acceptor.join(5)
            self._acceptor = None
        if listener is not None:
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.cut()
        for t in self._threads:
            t.join(5)

    def _spawn(self, target: object, *args: object) -> threading.Thread:
        t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(t)
        t.start()
        return t

    def _accept(self, listener: socket.socket) -> None:
        while True:
            with self._lock:
                if self._listener is not listener:
                    return
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self._target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets.update((client, upstream))
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on a migrated database of each backend."""
    engine = create_engine(database_url)
    init_schema(engine)
    yield engine
    engine.dispose()
