"""The broker's database: table definitions and engine set-up.

SQLite is the embedded default; the SQL issued by the stores is kept portable so that
PostgreSQL can replace it without a change outside this module.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, make_url
from sqlmodel import Field, SQLModel

__all__ = [
    "AgreementRow",
    "OrganisationRow",
    "ReplyRow",
    "TraceRow",
    "UTCDateTime",
    "VetoRow",
    "create_engine",
    "default_database_url",
    "init_schema",
]


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no timezone type and SQLAlchemy drops the offset when it writes there, so
    every value is converted to UTC first; naive values are refused rather than guessed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware values only")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class OrganisationRow(SQLModel, table=True):
    """A consumer organisation known to the broker."""

    __tablename__ = "organisations"

    id: str = Field(primary_key=True, max_length=64)
    name: str


class AgreementRow(SQLModel, table=True):
    """A data-sharing agreement. List fields hold JSON-encoded lists of strings."""

    __tablename__ = "agreements"

    id: str = Field(primary_key=True, max_length=128)
    organization_id: str = Field(foreign_key="organisations.id", index=True, max_length=64)
    procedure_code: str = Field(index=True, max_length=128)
    certificate_type_ids: str = Field(sa_type=sa.Text)
    legal_bases: str = Field(sa_type=sa.Text)
    legal_references: str = Field(sa_type=sa.Text)
    consent_required: bool = False
    valid_from: dt.datetime = Field(sa_type=UTCDateTime)
    valid_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    description: str = ""


class VetoRow(SQLModel, table=True):
    """A provider's veto over one agreement."""

    __tablename__ = "vetoes"
    __table_args__ = (sa.UniqueConstraint("agreement_id", "provider_id", name="uq_veto_agreement_provider"),)

    id: int | None = Field(default=None, primary_key=True)
    agreement_id: str = Field(foreign_key="agreements.id", max_length=128)
    provider_id: str = Field(max_length=64)
    reason: str = ""


class TraceRow(SQLModel, table=True):
    """One purpose-tagged trace record; see ``broker.domain.TraceRecord``.

    No foreign keys: denied requests from unknown consumers are traced too.
    ``certificate_type_ids`` and ``outcomes`` hold JSON text.
    """

    __tablename__ = "trace_records"
    __table_args__ = (
        # The idempotency key of requests: a reused id is a duplicate (SCSP 0229).
        sa.UniqueConstraint("consumer_organization_id", "request_id", name="uq_trace_org_request"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trace_id: str = Field(unique=True, max_length=64)
    request_id: str = Field(max_length=128)
    request_digest: str = Field(max_length=128)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    consumer_organization_id: str = Field(index=True, max_length=64)
    consumer_unit: str
    officer_id: str
    procedure_code: str = Field(index=True, max_length=128)
    purpose_text: str = Field(sa_type=sa.Text)
    case_file_id: str
    legal_basis_kind: str = Field(max_length=16)
    legal_basis_reference: str
    subject_document_type: str = Field(max_length=16)
    subject_ref: str = Field(index=True, max_length=128)
    certificate_type_ids: str = Field(sa_type=sa.Text)
    decision: str = Field(max_length=16)
    denial_reason: str | None = Field(default=None, nullable=True, max_length=64)
    denial_detail: str = Field(default="", sa_type=sa.Text)
    outcomes: str = Field(sa_type=sa.Text)
    duration_ms: int = 0


class ReplyRow(SQLModel, table=True):
    """The answer given to a request, for idempotent retries. ``payload`` is AES-GCM sealed."""

    __tablename__ = "replies"

    organization_id: str = Field(primary_key=True, max_length=64)
    request_id: str = Field(primary_key=True, max_length=128)
    request_digest: str = Field(max_length=128)
    kind: str = Field(max_length=16)
    payload: bytes = Field(sa_type=sa.LargeBinary)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


_TABLES = [
    OrganisationRow.__table__,  # type: ignore[attr-defined]
    AgreementRow.__table__,  # type: ignore[attr-defined]
    VetoRow.__table__,  # type: ignore[attr-defined]
    TraceRow.__table__,  # type: ignore[attr-defined]
    ReplyRow.__table__,  # type: ignore[attr-defined]
]


def default_database_url(var_dir: Path) -> str:
    """The embedded database of a broker whose state lives in ``var_dir``."""
    return f"sqlite:///{var_dir}/onceonly.db"


def create_engine(url: str, *, busy_timeout_ms: int = 5000, **kwargs: Any) -> sa.Engine:
    """Create an engine; for SQLite, make the file's directory and set durable pragmas.

    SQLite connections run in WAL mode (readers never block the writer) with
    ``synchronous=FULL`` so that a committed trace survives a power cut, and wait at most
    ``busy_timeout_ms`` for a lock before failing: the ledger must fail closed promptly
    rather than hang a request. Other URLs are passed to SQLAlchemy unchanged.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(url, **kwargs)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    connect_args = dict(kwargs.pop("connect_args", {}))
    # Pooled connections move between the writer thread and asyncio.to_thread workers;
    # the pool guarantees one user at a time, so the sqlite3 thread check is only in the way.
    connect_args.setdefault("check_same_thread", False)
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return engine


def init_schema(engine: sa.Engine) -> None:
    """Create the broker's tables (and indexes) that do not exist yet."""
    SQLModel.metadata.create_all(engine, tables=_TABLES)
