"""The broker's database: table definitions, engine set-up and schema migrations.

SQLite is the embedded default; PostgreSQL (through psycopg 3) replaces it by URL alone:
the SQL issued by the stores is portable, and the differences (pragmas, lock timeouts,
driver names) live in ``create_engine``. The schema is owned by the alembic revisions in
``broker/migrations``; ``init_schema`` brings a database up to the newest one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Dialect, make_url
from sqlmodel import Field, SQLModel

from onceonly.broker.config import default_database_path

log = logging.getLogger(__name__)

__all__ = [
    "TABLE_NAMES",
    "AgreementDecisionRow",
    "AgreementRow",
    "AgreementVersionRow",
    "AuditSampleRow",
    "AuditTaskRow",
    "CheckpointRow",
    "GovernanceEventRow",
    "MasterAgreementRow",
    "OrganisationRow",
    "QuotaCounterRow",
    "ReplyRow",
    "TraceRow",
    "UTCDateTime",
    "UsageFactDayRow",
    "UsageFactRow",
    "UsageHourRow",
    "VetoRow",
    "create_engine",
    "default_database_url",
    "init_schema",
    "normalise_url",
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
    """A member organisation (see ``domain.Organisation``)."""

    __tablename__ = "organisations"

    id: str = Field(primary_key=True, max_length=64)
    name: str
    kind: str = Field(default="CONSUMER", max_length=16)
    contact: str = Field(default="", max_length=256)


class GovernanceEventRow(SQLModel, table=True):
    """One entry of the governance log: who changed what in the platform's governance, hash-chained
    and signed (see ``broker.governance_log``)."""

    __tablename__ = "governance_events"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(unique=True)
    at: dt.datetime = Field(sa_type=UTCDateTime)
    actor_organization_id: str = Field(max_length=64)
    actor_role: str = Field(max_length=16)
    actor_via: str = Field(max_length=16)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=256)
    body: str = Field(sa_type=sa.Text)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    signature: str = Field(sa_type=sa.Text)


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
    officer_token_required: bool = False
    officer_document_required: bool = False
    version: int = 1
    """The version of the agreement in force (see ``agreement_versions``)."""
    suspended: str = Field(default="", sa_type=sa.Text)
    """Why an oversight body suspended it (who, when, the stated reason); empty: not suspended."""
    procedure_codes: str = Field(default="[]", sa_type=sa.Text)
    """Every procedure it serves (JSON list); ``procedure_code`` keeps the first, for older readers."""
    master_agreement_id: str = Field(default="", max_length=128)
    master_version: int = 0
    quota_per_minute: int = 0
    """Requests per minute its consumer may make under its master agreement (0: no cap)."""
    quota_per_day: int = 0


class AgreementVersionRow(SQLModel, table=True):
    """One version of an agreement, as proposed and decided (``broker.agreement_lifecycle``).

    ``terms`` is JSON. ``state``: PROPOSED, REJECTED (a provider vetoed the proposal), ACTIVE
    (approved by every provider concerned; in force between its dates, enforced through
    ``agreements``), SUPERSEDED (a later version became active), REVOKED.
    """

    __tablename__ = "agreement_versions"

    agreement_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    state: str = Field(max_length=16)
    terms: str = Field(sa_type=sa.Text)
    proposed_by: str = Field(max_length=64)
    proposed_at: dt.datetime = Field(sa_type=UTCDateTime)
    decided_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    note: str = Field(default="", sa_type=sa.Text)
    """Why it was rejected or revoked."""
    released: str = Field(default="", sa_type=sa.Text)
    """A DEFERRED disclosure released early: who, when and why (empty: not released)."""


class MasterAgreementRow(SQLModel, table=True):
    """One version of a master agreement: standard clauses agreements are bound to (JSON ``terms``)."""

    __tablename__ = "master_agreements"

    id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    terms: str = Field(sa_type=sa.Text)
    registered_by: str = Field(max_length=64)
    registered_at: dt.datetime = Field(sa_type=UTCDateTime)


class QuotaCounterRow(SQLModel, table=True):
    """Requests a consumer made under a master agreement's quota in one window (minute or day)."""

    __tablename__ = "quota_counters"

    master_agreement_id: str = Field(primary_key=True, max_length=128)
    organization_id: str = Field(primary_key=True, max_length=64)
    window: str = Field(primary_key=True, max_length=8)
    """``minute`` or ``day``."""
    window_start: int = Field(primary_key=True)
    """The window's first second (Unix time)."""
    count: int = 0


class AgreementDecisionRow(SQLModel, table=True):
    """A provider's decision on a proposed version: APPROVE or VETO, with its reason."""

    __tablename__ = "agreement_decisions"

    agreement_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    provider_id: str = Field(primary_key=True, max_length=64)
    decision: str = Field(max_length=16)
    reason: str = Field(default="", sa_type=sa.Text)
    at: dt.datetime = Field(sa_type=UTCDateTime)


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
        # Each broker replica appends to its own hash chain; a position is taken once.
        sa.Index("uq_trace_chain_seq", "chain_id", "seq", unique=True),
        sa.Index("ix_trace_records_created_at", "created_at"),
        # Proofs' verification codes are a prefix of the record's hash (``broker.proofs``).
        sa.Index("ix_trace_records_record_hash", "record_hash"),
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
    chain_id: str = Field(max_length=64)
    seq: int
    prev_hash: str = Field(max_length=64)
    record_hash: str = Field(max_length=64)
    officer_identification: str = Field(default="", max_length=16)
    """TOKEN, CERTIFICATE or INSECURE; empty in traces written before it was recorded."""
    reply_hash: str = Field(default="", max_length=64)
    agreements: str = Field(default="", sa_type=sa.Text)
    """JSON ``[[certificate type, agreement, version], …]``: what allowed a granted request; empty
    for denials and in records written before it was recorded."""
    """SHA-256 of the reply stored with this record (see ``chain.reply_hash``), so the chain
    covers stored replies too; empty when none was stored, and in records written before."""


class ReplyRow(SQLModel, table=True):
    """The answer given to a request, for idempotent retries. ``payload`` is AES-GCM sealed."""

    __tablename__ = "replies"

    organization_id: str = Field(primary_key=True, max_length=64)
    request_id: str = Field(primary_key=True, max_length=128)
    request_digest: str = Field(max_length=128)
    kind: str = Field(max_length=16)
    payload: bytes = Field(sa_type=sa.LargeBinary)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)


class CheckpointRow(SQLModel, table=True):
    """A signed statement of a chain's head: (chain, position, hash) at a time.

    Checkpoints survive retention purges, so the chain stays verifiable after old records go.
    """

    __tablename__ = "chain_checkpoints"
    __table_args__ = (sa.UniqueConstraint("chain_id", "seq", name="uq_checkpoint_chain_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    chain_id: str = Field(max_length=64)
    seq: int
    head_hash: str = Field(max_length=64)
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    signature: str = Field(sa_type=sa.Text)


class UsageHourRow(SQLModel, table=True):
    """Usage of one closed hour, rolled up from its traces (see ``broker.usage_rollup``).

    Per hour, one row per (grouping, key) — a provider, a consumer organisation or a procedure —
    and one row with grouping ``HOUR`` and an empty key saying the hour was rolled up and how many
    traces it held (so an hour without traces is not rolled up again). ``counts`` is JSON
    ``{outcome: n}``, ``latencies`` JSON ``{milliseconds: n}``: exact, so percentiles over many
    hours are the same as over their traces.
    """

    __tablename__ = "usage_hours"

    hour: dt.datetime = Field(sa_type=UTCDateTime, primary_key=True)
    grouping: str = Field(primary_key=True, max_length=16)
    key: str = Field(primary_key=True, max_length=128)
    total: int = 0
    counts: str = Field(default="{}", sa_type=sa.Text)
    latencies: str = Field(default="{}", sa_type=sa.Text)


class _UsageFactColumns(SQLModel):
    """The dimensions and counts usage facts share (hourly and daily)."""

    consumer_organization_id: str = Field(primary_key=True, max_length=64)
    procedure_code: str = Field(primary_key=True, max_length=128)
    legal_basis_kind: str = Field(primary_key=True, max_length=16)
    certificate_type_id: str = Field(primary_key=True, max_length=128)
    provider_id: str = Field(primary_key=True, max_length=64)
    outcome: str = Field(primary_key=True, max_length=32)
    denial_reason: str = Field(primary_key=True, max_length=64)
    checks: int = 0
    requests: int = 0


class UsageFactRow(_UsageFactColumns, table=True):
    """Checks of one closed hour counted by consumer, procedure, legal-basis kind, certificate
    type, provider, outcome and denial reason (``broker.usage_facts``); ``requests`` counts each
    request once. The row with outcome ``*HOUR*`` says the hour was rolled up."""

    __tablename__ = "usage_facts"

    hour: dt.datetime = Field(sa_type=UTCDateTime, primary_key=True)


class UsageFactDayRow(_UsageFactColumns, table=True):
    """The usage facts of one closed day (summed from its hours): what long ranges are read from.
    The row with outcome ``*DAY*`` says the day was rolled up."""

    __tablename__ = "usage_facts_daily"

    day: dt.datetime = Field(sa_type=UTCDateTime, primary_key=True)


class VerificationJobRow(SQLModel, table=True):
    """An asynchronous verification (``broker.jobs``): the submission, sealed, and its progress."""

    __tablename__ = "verification_jobs"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "submission_id", name="uq_verification_jobs_submission"),
        sa.Index("ix_verification_jobs_state_submitted", "state", "submitted_at"),
    )

    job_id: str = Field(primary_key=True, max_length=64)
    organization_id: str = Field(max_length=64)
    submission_id: str = Field(max_length=64)
    submission_digest: str = Field(max_length=64)
    """SHA-256 of the submission: the same id with another body is refused."""
    submission: bytes = Field(sa_type=sa.LargeBinary)
    """The serialized ``SubmitVerificationRequest``, AES-GCM sealed (it names residents)."""
    officer_identification: str = Field(max_length=16)
    state: str = Field(max_length=16)
    subjects: int
    submitted_at: dt.datetime = Field(sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    done_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    lease_owner: str = Field(default="", max_length=64)
    """The broker process working on the job (its chain id), until ``lease_until``."""
    lease_until: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class VerificationJobItemRow(SQLModel, table=True):
    """One decided subject of a job; its answer is the ledger's stored reply for ``request_id``,
    or ``error`` (a serialized ``google.rpc.Status``) when it was refused."""

    __tablename__ = "verification_job_items"

    job_id: str = Field(primary_key=True, max_length=64)
    position: int = Field(primary_key=True)
    request_id: str = Field(max_length=128)
    error: bytes | None = Field(default=None, sa_type=sa.LargeBinary, nullable=True)
    decided_at: dt.datetime = Field(sa_type=UTCDateTime)


class ScspPetitionRow(SQLModel, table=True):
    """An asynchronous SCSP petition taken (``broker.scsp_store``), by its ``IdPeticion``, with its
    body (sealed) to answer ``solicitudRespuesta``."""

    __tablename__ = "scsp_petitions"
    __table_args__ = (sa.Index("ix_scsp_petitions_expires_at", "expires_at"),)

    id_peticion: str = Field(primary_key=True, max_length=26)
    organization_id: str = Field(max_length=64)
    mode: str = Field(max_length=8)
    """``async`` (synchronous petitions are known by their traces)"""
    digest: str = Field(max_length=64)
    """SHA-256 of the petition as signed (canonical): the same id with another body is refused."""
    elements: int
    job_id: str | None = Field(default=None, max_length=64, nullable=True)
    petition: bytes | None = Field(default=None, sa_type=sa.LargeBinary, nullable=True)
    """An asynchronous petition's ``Peticion`` (canonical XML), AES-GCM sealed: it names residents."""
    created_at: dt.datetime = Field(sa_type=UTCDateTime)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)


class AuditSampleRow(SQLModel, table=True):
    """A random sample of requests drawn by an oversight body (``broker.audit``)."""

    __tablename__ = "audit_samples"

    sample_id: str = Field(primary_key=True, max_length=64)
    drawn_at: dt.datetime = Field(sa_type=UTCDateTime)
    drawn_by: str = Field(max_length=64)
    consumer_organization_id: str = Field(default="", max_length=64)
    """Empty: every consumer's requests."""
    since: dt.datetime = Field(sa_type=UTCDateTime)
    until: dt.datetime = Field(sa_type=UTCDateTime)
    size: int
    seed: str = Field(max_length=64)
    population: int


class AuditTaskRow(SQLModel, table=True):
    """One sampled request, to be justified by its consumer: ``state`` OPEN, JUSTIFIED or OVERDUE."""

    __tablename__ = "audit_tasks"
    __table_args__ = (sa.Index("ix_audit_tasks_consumer_state", "consumer_organization_id", "state"),)

    task_id: str = Field(primary_key=True, max_length=64)
    sample_id: str = Field(index=True, max_length=64)
    trace_id: str = Field(max_length=64)
    consumer_organization_id: str = Field(max_length=64)
    state: str = Field(max_length=16)
    deadline: dt.datetime = Field(sa_type=UTCDateTime)
    justification: str = Field(default="", sa_type=sa.Text)
    answered_by: str = Field(default="", max_length=200)
    answered_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


_TABLES = [
    OrganisationRow.__table__,  # type: ignore[attr-defined]
    AgreementRow.__table__,  # type: ignore[attr-defined]
    AgreementVersionRow.__table__,  # type: ignore[attr-defined]
    AgreementDecisionRow.__table__,  # type: ignore[attr-defined]
    MasterAgreementRow.__table__,  # type: ignore[attr-defined]
    QuotaCounterRow.__table__,  # type: ignore[attr-defined]
    VetoRow.__table__,  # type: ignore[attr-defined]
    TraceRow.__table__,  # type: ignore[attr-defined]
    ReplyRow.__table__,  # type: ignore[attr-defined]
    CheckpointRow.__table__,  # type: ignore[attr-defined]
    UsageHourRow.__table__,  # type: ignore[attr-defined]
    UsageFactRow.__table__,  # type: ignore[attr-defined]
    UsageFactDayRow.__table__,  # type: ignore[attr-defined]
    GovernanceEventRow.__table__,  # type: ignore[attr-defined]
    AuditSampleRow.__table__,  # type: ignore[attr-defined]
    AuditTaskRow.__table__,  # type: ignore[attr-defined]
]
TABLE_NAMES: frozenset[str] = frozenset(t.name for t in _TABLES)
"""The broker's tables; migrations leave any other table of a shared database alone."""

MIGRATIONS = "onceonly.broker:migrations"
"""alembic's ``script_location``, as a package resource so that it works when installed."""
"""The revision whose schema ``SQLModel.metadata.create_all`` made before migrations existed."""
_MIGRATION_LOCK = 0x6F6E63656F6E6C79  # "onceonly": the PostgreSQL advisory lock key of migrations


def default_database_url(var_dir: Path) -> str:
    """The embedded database of a broker whose state lives in ``var_dir``."""
    return f"sqlite:///{default_database_path(var_dir)}"


def normalise_url(url: str | URL) -> URL:
    """Parse a database URL; a PostgreSQL URL without a driver gets psycopg 3.

    ``postgresql://`` (and the older ``postgres://``) would otherwise select psycopg2,
    which onceonly does not install.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _private_database_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (0600), and tighten one made before.

    SQLite gives its ``-wal`` and ``-shm`` files the database file's permissions; those left by an
    earlier version are tightened too. The traces name no one, but who asked what, when, and why
    is for the platform and oversight to read, not for every account on the machine.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if existing.stat().st_mode & 0o077:
                existing.chmod(0o600)


def create_engine(
    url: str | URL, *, busy_timeout_ms: int = 5000, synchronous: str = "FULL", **kwargs: Any
) -> sa.Engine:
    """Create an engine with the settings the ledger relies on to fail closed promptly.

    SQLite: make the file's directory; connections run in WAL mode (readers never block
    the writer) with ``synchronous=FULL`` so that a committed trace survives a power cut
    (``NORMAL`` for data that may lose its last commits to a power cut, such as quota counters),
    and wait at most ``busy_timeout_ms`` for a lock.

    PostgreSQL: psycopg 3; a statement waits at most ``busy_timeout_ms`` for a lock
    (``lock_timeout``), connecting gives up after about as long, and pooled connections
    are pinged before use so that the broker recovers by itself after a database restart.

    Other URLs are passed to SQLAlchemy unchanged.
    """
    if synchronous not in ("FULL", "NORMAL"):
        raise ValueError("synchronous must be FULL or NORMAL")
    parsed = normalise_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return _create_postgresql_engine(parsed, busy_timeout_ms, **kwargs)
    if backend != "sqlite":
        return sa.create_engine(parsed, **kwargs)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if not in_memory:
        _private_database_file(Path(database).expanduser().resolve())
    connect_args = dict(kwargs.pop("connect_args", {}))
    # Pooled connections move between the writer thread and asyncio.to_thread workers;
    # the pool guarantees one user at a time, so the sqlite3 thread check is only in the way.
    connect_args.setdefault("check_same_thread", False)
    engine = sa.create_engine(parsed, connect_args=connect_args, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return engine


def _create_postgresql_engine(url: URL, busy_timeout_ms: int, **kwargs: Any) -> sa.Engine:
    connect_args = dict(kwargs.pop("connect_args", {}))
    options = connect_args.pop("options", url.query.get("options", ""))
    if isinstance(options, tuple):  # a query parameter given twice
        options = " ".join(options)
    # Options of the URL or the caller come last and so win over these defaults.
    connect_args["options"] = f"-c lock_timeout={int(busy_timeout_ms)} {options}".strip()
    if "connect_timeout" not in url.query:
        # Whole seconds; libpq treats anything below 2 as 2.
        connect_args.setdefault("connect_timeout", max(2, -(-int(busy_timeout_ms) // 1000)))
    if "application_name" not in url.query:
        connect_args.setdefault("application_name", "onceonly")
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, connect_args=connect_args, **kwargs)


def migrations_config() -> Config:
    """The alembic configuration of the broker's migrations (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


def init_schema(engine: sa.Engine) -> None:
    """Bring the database up to the newest schema revision (alembic ``upgrade head``).

    On PostgreSQL the upgrade holds an advisory
    lock and runs in one transaction, so broker replicas starting together take turns and
    a failed migration leaves nothing half-done.
    """
    config = migrations_config()
    # Alembic logs its context and each step at INFO, on every start: one line of ours says it all.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
        before = MigrationContext.configure(conn).get_current_revision()
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("database schema migrated", extra={"from_revision": before or "none", "to_revision": after})
    else:
        log.debug("database schema up to date", extra={"revision": after})
