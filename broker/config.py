"""Broker configuration: typed, with a documented default for every field.

Each field can be set by an ``ONCEONLY_*`` environment variable (named in its docstring)
and by a command-line flag of ``onceonly serve broker``; flags win over the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from onceonly.settings import REFERENCE_PROVIDER_TARGETS, parse_bool

__all__ = ["DEFAULT_PROVIDER_TARGETS", "BrokerConfig", "parse_bool", "parse_targets"]

DEFAULT_PROVIDER_TARGETS = REFERENCE_PROVIDER_TARGETS


def parse_targets(text: str) -> dict[str, str]:
    """Parse ``id=host:port,id=host:port``; raise ``ValueError`` naming a bad entry."""
    targets = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        pid, sep, target = part.partition("=")
        if not sep or not pid.strip() or not target.strip():
            raise ValueError(f"provider address must be id=host:port, got {part!r}")
        targets[pid.strip()] = target.strip()
    return targets


DATABASE_FOLDER = "db"
"""The embedded database's own folder under the state directory, apart from ``keys/``: a copy of
the database folder (a backup, a snapshot handed to someone) carries no key."""


def default_database_path(var_dir: Path) -> Path:
    """The embedded SQLite file of a broker whose state is in ``var_dir``: ``<var_dir>/db/onceonly.db``,
    or ``<var_dir>/onceonly.db`` where an earlier version created it there (and no new one exists),
    so that an upgrade loses nothing; the broker then warns that it should be moved."""
    current = var_dir / DATABASE_FOLDER / "onceonly.db"
    legacy = var_dir / "onceonly.db"
    return legacy if legacy.exists() and not current.exists() else current


@dataclass(frozen=True, kw_only=True)
class BrokerConfig:
    listen: str = "127.0.0.1:50051"
    """Address the Broker service listens on. ``ONCEONLY_BROKER_LISTEN``."""
    var_dir: Path = Path("var")
    """Run-time state: keys, the default SQLite database. ``ONCEONLY_VAR_DIR``."""
    database_url: str = ""
    """SQLAlchemy URL of the trace and policy database; empty means the embedded SQLite file
    ``<var_dir>/db/onceonly.db`` (see :func:`default_database_path`). ``ONCEONLY_DATABASE_URL``."""
    catalog_path: Path | None = None
    """Catalog TOML file; unset means the one shipped in ``broker/data``. ``ONCEONLY_CATALOG``."""
    agreements_seed: Path | None = None
    """Governance file whose entries the database lacks are recorded at start (never changing or
    revoking what is recorded); ``demo`` names the one shipped in the package.
    ``ONCEONLY_AGREEMENTS_SEED``."""
    providers: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PROVIDER_TARGETS))
    """Provider addresses, ``id=host:port,...``. ``ONCEONLY_PROVIDERS``."""
    provider_timeout_ms: int = 2000
    """Deadline of each provider call. ``ONCEONLY_PROVIDER_TIMEOUT_MS``."""
    attestation_ttl_s: int = 86400
    """Validity of an attestation (``exp - iat``). ``ONCEONLY_ATTESTATION_TTL_S``."""
    issuer: str = "onceonly-broker"
    """``iss`` of every attestation. ``ONCEONLY_ISSUER``."""
    policy_refresh_s: float = 10.0
    """How often agreements are re-read from the database. ``ONCEONLY_POLICY_REFRESH_S``."""
    shutdown_grace_s: float = 5.0
    """Time in-flight calls get to finish on SIGTERM. ``ONCEONLY_SHUTDOWN_GRACE_S``."""
    chain_id: str = ""
    """This replica's ledger chain; empty means the one recorded in ``<var_dir>/ledger/chain-id``
    (created at first start). Replicas sharing a database need distinct chains. ``ONCEONLY_CHAIN_ID``."""
    checkpoint_every: int = 1000
    """Sign a checkpoint of the chain head after this many records. ``ONCEONLY_CHECKPOINT_EVERY``."""
    checkpoint_interval_s: float = 60.0
    """...or after this many seconds with new records. ``ONCEONLY_CHECKPOINT_INTERVAL_S``."""
    db_busy_timeout_ms: int = 5000
    """How long a database write waits for a lock before failing closed. ``ONCEONLY_DB_BUSY_TIMEOUT_MS``."""
    tls_dir: Path | None = None
    """Certificates (``onceonly pki init``): ``broker.pem``/``broker-key.pem`` (server, and client
    to the providers) and ``ca.pem``; unset means ``<var_dir>/pki``. ``ONCEONLY_TLS_DIR``."""
    insecure: bool = False
    """Plaintext, callers named by ``x-onceonly-*`` metadata: local development only, refused
    unless every listen address is loopback. ``ONCEONLY_INSECURE=1``."""
    jwt_issuers: Path | None = None
    """TOML file of the identity providers whose bearer tokens are accepted. ``ONCEONLY_JWT_ISSUERS``."""
    token_listen: str = ""
    """Optional second address: TLS without client certificates, for callers with a bearer token
    only. ``ONCEONLY_BROKER_TOKEN_LISTEN``."""
    scsp_listen: str = ""
    """Optional address of the SCSP v3 facade (HTTPS, client certificates from the platform CA,
    WS-Security signed SOAP); empty: none. ``ONCEONLY_SCSP_LISTEN``."""
    scsp_mapping: Path | None = None
    """SCSP certificate codes → catalog types (TOML); unset: ``broker/data/scsp.toml``.
    ``ONCEONLY_SCSP_MAPPING``."""
    scsp_allow_sha1: bool = False
    """Accept RSA-SHA1 WS-Security signatures, still seen in live SCSP traffic (RSA-SHA256 is
    required otherwise). ``ONCEONLY_SCSP_ALLOW_SHA1``."""
    scsp_max_body_bytes: int = 8 * 1024 * 1024
    """The largest SCSP request read; a larger one is refused (0401, HTTP 413).
    ``ONCEONLY_SCSP_MAX_BODY_BYTES``."""
    breaker_failures: int = 5
    """Consecutive provider failures (unavailable, timeout, error) that open the provider's
    circuit: its checks then fail fast as ``UNAVAILABLE``; 0 disables this rule.
    ``ONCEONLY_BREAKER_FAILURES``."""
    breaker_failure_rate: float = 0.5
    """...or this share of failures over a provider's last 20 calls; 0 disables this rule.
    ``ONCEONLY_BREAKER_FAILURE_RATE``."""
    breaker_cooldown_ms: int = 5000
    """How long an open circuit fails fast before one probe call may try the provider again.
    ``ONCEONLY_BREAKER_COOLDOWN_MS``."""
    provider_batch: int = 64
    """The most checks for one provider sent in one ``AttestBatch`` call: the checks asked in the same
    turn of the event loop leave together (no check waits for others); 1 sends each alone.
    ``ONCEONLY_PROVIDER_BATCH`` (1 to 256)."""
    provider_calls_in_flight: int = 2
    """Calls to one provider under way at once while batching; checks asked beyond wait for one to
    return and leave together in the next. ``ONCEONLY_PROVIDER_CALLS_IN_FLIGHT`` (1 to 64)."""
    provider_retries: int = 1
    """Retries of a provider call that found no connection (transport ``UNAVAILABLE``), within
    the check's deadline; timeouts are never retried. ``ONCEONLY_PROVIDER_RETRIES``."""
    max_in_flight: int = 256
    """Verifications decided at once (each ``Verify`` call and each subject of a ``VerifyBulk``
    stream); beyond, calls are refused at once with ``RESOURCE_EXHAUSTED`` (``OVERLOADED``);
    0 means no limit. ``ONCEONLY_MAX_IN_FLIGHT``."""
    overload_retry_ms: int = 200
    """The retry delay a refused caller is told (``google.rpc.RetryInfo``).
    ``ONCEONLY_OVERLOAD_RETRY_MS``."""
    bulk_admission_wait_ms: int = 5000
    """How long a ``VerifyBulk`` stream waits for capacity for its next subject, or for its client
    to read a result, before it is ended with ``RESOURCE_EXHAUSTED`` (resumable by request id).
    ``ONCEONLY_BULK_ADMISSION_WAIT_MS``."""
    witness_path: Path | None = None
    """The file of signed chain heads kept outside the database (see ``witness_file``).
    ``ONCEONLY_WITNESS_FILE``."""
    oversight_max_in_flight: int = 4
    """Oversight reads (``ListTraces``, ``GetUsage``, ``GetResidentReport``) in progress at once;
    beyond, ``RESOURCE_EXHAUSTED`` at once: their scans must not slow verifications down.
    ``ONCEONLY_OVERSIGHT_MAX_IN_FLIGHT`` (0: no limit)."""
    oversight_query_timeout_ms: int = 10000
    """Time budget of one oversight read; past it the statement is stopped and the call ends
    ``RESOURCE_EXHAUSTED`` (``QUERY_TOO_LONG``). ``ONCEONLY_OVERSIGHT_QUERY_TIMEOUT_MS``."""
    job_wait_s: float = 86400.0
    """How long a subject of an asynchronous job waits for an agency that answers later
    (``Attest`` PENDING); past it the check is ``UNAVAILABLE``. ``ONCEONLY_JOB_WAIT_S``."""
    ledger_commit_window_ms: float = 2.0
    """How long the ledger's writer may hold a commit open for more records while they arrive
    closer together than this (group commit: one sync for several records); each record still
    waits for its commit before its reply leaves. 0 writes every batch as soon as it is taken.
    ``ONCEONLY_LEDGER_COMMIT_WINDOW_MS`` (0 to 100)."""
    health_check_s: float = 5.0
    """How often the broker checks its dependencies (database, signing key, maintenance mode, the
    providers' circuits) for its health service. ``ONCEONLY_HEALTH_CHECK_S``."""
    retention_days: int = 1825
    """How long trace records are kept, as the platform states it to residents (their access log
    says entries older than this are removed); ``onceonly ledger purge --older-than-days`` applies
    it. ``ONCEONLY_RETENTION_DAYS``."""
    bulk_org_share: float = 0.5
    """The share of ``max_in_flight`` one organisation's bulk streams may hold together, so that
    other callers always find room. ``ONCEONLY_BULK_ORG_SHARE``."""
    reuse_port: bool = False
    """Bind with ``SO_REUSEPORT``, so that several broker processes on one host share one listen
    address (the kernel spreads connections over them); each needs its own ``chain_id``.
    ``ONCEONLY_REUSE_PORT=1``."""
    max_connections_per_peer: int = 64
    """Connections one peer address may have in use (a call in flight, or one ended in the last
    5 s); a call on one more is refused ``RESOURCE_EXHAUSTED`` (``TOO_MANY_CONNECTIONS``). 0: no
    cap. ``ONCEONLY_MAX_CONNECTIONS_PER_PEER``."""
    connection_idle_s: float = 300.0
    """A connection without calls for this long is closed by the broker (a client reconnects by
    itself). ``ONCEONLY_CONNECTION_IDLE_S``."""

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{default_database_path(self.var_dir)}"

    @property
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"

    @property
    def witness_file(self) -> Path:
        """Where the ledger's signed chain heads are witnessed, outside the database
        (``ONCEONLY_WITNESS_FILE``; default ``<var_dir>/ledger/witness.jsonl``)."""
        return (
            self.witness_path if self.witness_path is not None else self.var_dir / "ledger" / "witness.jsonl"
        )

    @property
    def effective_tls_dir(self) -> Path:
        return self.tls_dir if self.tls_dir is not None else self.var_dir / "pki"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> BrokerConfig:
        """Defaults, then ``ONCEONLY_*`` variables, then ``overrides`` (flags) that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = _ENV_NAMES[f.name]
            if name in env and env[name] != "":
                values[f.name] = _convert(f.name, env[name], name)
        config = cls(**values)
        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        if config.agreements_seed is not None and str(config.agreements_seed) == PACKAGED_SEED:
            config = replace(config, agreements_seed=packaged_seed())
        return config


PACKAGED_SEED = "demo"
"""``--seed-agreements demo``: the demo's governance file shipped in the package, from any folder."""


def packaged_seed() -> Path:
    """The governance file shipped in the package (``broker/data/agreements.toml``)."""
    return Path(str(resources.files("onceonly.broker").joinpath("data/agreements.toml")))


_ENV_NAMES = {
    "listen": "ONCEONLY_BROKER_LISTEN",
    "var_dir": "ONCEONLY_VAR_DIR",
    "database_url": "ONCEONLY_DATABASE_URL",
    "catalog_path": "ONCEONLY_CATALOG",
    "agreements_seed": "ONCEONLY_AGREEMENTS_SEED",
    "providers": "ONCEONLY_PROVIDERS",
    "provider_timeout_ms": "ONCEONLY_PROVIDER_TIMEOUT_MS",
    "attestation_ttl_s": "ONCEONLY_ATTESTATION_TTL_S",
    "issuer": "ONCEONLY_ISSUER",
    "policy_refresh_s": "ONCEONLY_POLICY_REFRESH_S",
    "shutdown_grace_s": "ONCEONLY_SHUTDOWN_GRACE_S",
    "db_busy_timeout_ms": "ONCEONLY_DB_BUSY_TIMEOUT_MS",
    "chain_id": "ONCEONLY_CHAIN_ID",
    "checkpoint_every": "ONCEONLY_CHECKPOINT_EVERY",
    "checkpoint_interval_s": "ONCEONLY_CHECKPOINT_INTERVAL_S",
    "tls_dir": "ONCEONLY_TLS_DIR",
    "insecure": "ONCEONLY_INSECURE",
    "jwt_issuers": "ONCEONLY_JWT_ISSUERS",
    "token_listen": "ONCEONLY_BROKER_TOKEN_LISTEN",
    "scsp_listen": "ONCEONLY_SCSP_LISTEN",
    "scsp_mapping": "ONCEONLY_SCSP_MAPPING",
    "scsp_allow_sha1": "ONCEONLY_SCSP_ALLOW_SHA1",
    "scsp_max_body_bytes": "ONCEONLY_SCSP_MAX_BODY_BYTES",
    "reuse_port": "ONCEONLY_REUSE_PORT",
    "breaker_failures": "ONCEONLY_BREAKER_FAILURES",
    "breaker_failure_rate": "ONCEONLY_BREAKER_FAILURE_RATE",
    "breaker_cooldown_ms": "ONCEONLY_BREAKER_COOLDOWN_MS",
    "provider_retries": "ONCEONLY_PROVIDER_RETRIES",
    "provider_batch": "ONCEONLY_PROVIDER_BATCH",
    "provider_calls_in_flight": "ONCEONLY_PROVIDER_CALLS_IN_FLIGHT",
    "max_in_flight": "ONCEONLY_MAX_IN_FLIGHT",
    "overload_retry_ms": "ONCEONLY_OVERLOAD_RETRY_MS",
    "bulk_admission_wait_ms": "ONCEONLY_BULK_ADMISSION_WAIT_MS",
    "bulk_org_share": "ONCEONLY_BULK_ORG_SHARE",
    "oversight_max_in_flight": "ONCEONLY_OVERSIGHT_MAX_IN_FLIGHT",
    "witness_path": "ONCEONLY_WITNESS_FILE",
    "oversight_query_timeout_ms": "ONCEONLY_OVERSIGHT_QUERY_TIMEOUT_MS",
    "retention_days": "ONCEONLY_RETENTION_DAYS",
    "health_check_s": "ONCEONLY_HEALTH_CHECK_S",
    "ledger_commit_window_ms": "ONCEONLY_LEDGER_COMMIT_WINDOW_MS",
    "job_wait_s": "ONCEONLY_JOB_WAIT_S",
    "max_connections_per_peer": "ONCEONLY_MAX_CONNECTIONS_PER_PEER",
    "connection_idle_s": "ONCEONLY_CONNECTION_IDLE_S",
}


def _convert(name: str, text: str, env_name: str) -> Any:
    """Parse an environment value by the type its field declares."""
    kind = _FIELD_TYPES[name]
    try:
        if name == "providers":
            return parse_targets(text)
        if "Path" in kind:
            return Path(text)
        if kind == "bool":
            return parse_bool(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError as exc:
        raise ValueError(f"{env_name}: {exc}") from None
    return text


_FIELD_TYPES = {f.name: str(f.type) for f in fields(BrokerConfig)}
