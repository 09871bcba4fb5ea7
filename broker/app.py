"""Assembling and running the broker: storage, keys, catalog, policy, providers, server."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import grpc
import sqlalchemy as sa
from cryptography import x509

from onceonly import metrics, telemetry
from onceonly.broker.admission import (
    OVERSIGHT_METHODS,
    RESIDENT_METHODS,
    AdmissionControl,
    AdmissionInterceptor,
)
from onceonly.broker.agreements import PolicyStore
from onceonly.broker.attestation import AttestationSigner, KeyRing
from onceonly.broker.audit import AuditSampling
from onceonly.broker.auth import AuthInterceptor, TokenVerifier, current_principal, load_jwt_issuers
from onceonly.broker.breaker import BreakerSettings, BreakerState, CircuitBreaker
from onceonly.broker.catalog import Catalog
from onceonly.broker.chain import CHECKPOINT_TYPE, chain_id_for
from onceonly.broker.config import BrokerConfig
from onceonly.broker.governance import GovernanceService, bootstrap
from onceonly.broker.governance_api import SERVICE_NAME as GOVERNANCE_SERVICE_NAME
from onceonly.broker.governance_api import GovernanceServicer
from onceonly.broker.governance_log import GOVERNANCE_TYPE, GovernanceLog
from onceonly.broker.grpc_api import SERVICE_NAME, BrokerServicer
from onceonly.broker.health import check_dependencies, report_health_forever
from onceonly.broker.jobs import JobRunner, JobStore
from onceonly.broker.ledger import ReplyCipher, SqlTraceLedger, SubjectPseudonymiser, rekey_reply_digests
from onceonly.broker.oversight import OversightService
from onceonly.broker.oversight_api import SERVICE_NAME as OVERSIGHT_SERVICE_NAME
from onceonly.broker.oversight_api import OversightServicer
from onceonly.broker.policy import Policy
from onceonly.broker.policy_notify import listen_for_changes
from onceonly.broker.proofs import Proofs
from onceonly.broker.providers import GrpcProviderClient, ProviderClient
from onceonly.broker.quotas import SqlQuotas
from onceonly.broker.resident_access import ResidentAccessService
from onceonly.broker.resident_api import SERVICE_NAME as RESIDENT_SERVICE_NAME
from onceonly.broker.resident_api import ResidentAccessServicer
from onceonly.broker.service import ServiceSettings, VerificationService
from onceonly.broker.storage import create_engine, init_schema, normalise_url
from onceonly.broker.trace_queries import SqlTraceQueries
from onceonly.broker.witness import WitnessLog, check_before_append
from onceonly.evidence import EvidenceVerifier
from onceonly.https import HttpsServer, start_https
from onceonly.peers import PeerConnections
from onceonly.pki import (
    BROKER_ORGANISATION,
    BROKER_SEAL_NAME,
    ClientTls,
    PkiError,
    RevocationList,
    TlsConfig,
    cert_path,
    key_path,
)
from onceonly.serving import (
    REUSE_PORT_OPTIONS,
    SERVER_OPTIONS,
    Listener,
    RunningServer,
    require_loopback,
    run_until_signal,
    start_server,
)
from onceonly.v1 import broker_pb2_grpc, governance_pb2_grpc, oversight_pb2_grpc, resident_pb2_grpc

log = logging.getLogger(__name__)


class PolicyHolder:
    """The current policy, re-read from the database in the background."""

    def __init__(self, store: PolicyStore, catalog: Catalog):
        self._store = store
        self._catalog = catalog
        self.current = Policy(store.load_snapshot(), catalog)

    def __call__(self) -> Policy:
        return self.current

    async def refresh(self) -> None:
        snapshot = await asyncio.to_thread(self._store.load_snapshot)
        self.current = Policy(snapshot, self._catalog)

    async def refresh_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh()
            except Exception as exc:  # keep the last good policy; the database may come back
                log.warning("policy refresh failed", extra={"error": str(exc)})


async def _watch_keys(keys: KeyRing, every_s: float) -> None:
    """Pick up keys added by ``onceonly keys rotate`` without a restart."""
    while True:
        await asyncio.sleep(every_s)
        try:
            if await asyncio.to_thread(keys.refresh):
                log.info("signing key rotated", extra={"kid": keys.active.kid})
        except Exception as exc:  # keep signing with the keys already loaded
            log.warning("cannot re-read signing keys", extra={"error": str(exc)})


USAGE_ROLL_UP_EVERY_S = 300.0


async def _roll_up_usage(queries: SqlTraceQueries, every_s: float) -> None:
    """Roll up closed hours of usage in the background, so oversight's usage reads seldom have to."""
    while True:
        try:
            rolled = await asyncio.to_thread(queries.roll_up_closed_hours)
            if rolled:
                log.info("usage rolled up", extra={"hours": rolled})
        except Exception as exc:  # the next round tries again; usage reads roll up what they need
            log.warning("cannot roll up usage", extra={"error": str(exc)})
        await asyncio.sleep(every_s)


@dataclass
class BrokerApp:
    """A running broker and what it owns, so that it can be stopped in order."""

    config: BrokerConfig
    server: RunningServer
    service: VerificationService
    ledger: SqlTraceLedger
    engine: sa.Engine
    policy: PolicyHolder
    providers: dict[str, ProviderClient]
    admission: AdmissionControl | None = None
    """The in-flight bound (``ONCEONLY_MAX_IN_FLIGHT``), if any."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    quotas: SqlQuotas | None = None
    scsp: HttpsServer | None = None
    """The SCSP v3 facade's listener (``ONCEONLY_SCSP_LISTEN``), if any."""

    def circuits_open(self) -> dict[str, bool]:
        """Whether each provider's circuit is open (for health and metrics)."""
        return {pid: b.state is BreakerState.OPEN for pid, b in self.breakers.items()}

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """The circuit breaker of each provider the broker reaches itself."""
        return {pid: c for pid, c in self.providers.items() if isinstance(c, CircuitBreaker)}

    @property
    def target(self) -> str:
        return self.server.target

    @property
    def token_target(self) -> str | None:
        """The address of the bearer-token listener (TLS without client certificates), if any."""
        return self.server.target_of(self.server.extra_ports[0]) if self.server.extra_ports else None

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let in-flight ones finish, then flush the ledger and close."""
        if self.scsp is not None:
            await self.scsp.stop()
        await self.server.stop(self.config.shutdown_grace_s if grace is None else grace)
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.ledger.close()
        for client in self.providers.values():
            await client.close()
        if self.quotas is not None:
            self.quotas.close()
        self.engine.dispose()


@dataclass(frozen=True)
class Security:
    """How the broker authenticates its callers and itself to the providers."""

    tls: TlsConfig | None
    listeners: tuple[Listener, ...]
    provider_tls: ClientTls | None
    tokens: TokenVerifier | None


def security(config: BrokerConfig) -> Security:
    """Check and load the TLS and token settings; ``PkiError``/``ValueError`` say what is wrong."""
    tokens = TokenVerifier(load_jwt_issuers(config.jwt_issuers)) if config.jwt_issuers else None
    if config.token_listen and tokens is None:
        raise ValueError("a token listener (ONCEONLY_BROKER_TOKEN_LISTEN) needs ONCEONLY_JWT_ISSUERS")
    if config.insecure:
        require_loopback(config.listen, "the broker in insecure mode")
        if config.token_listen:
            require_loopback(config.token_listen, "the broker in insecure mode")
        log.warning(
            "INSECURE MODE: plaintext, callers named by x-onceonly-* metadata; for local development only",
            extra={"listen": config.listen},
        )
        listeners = (Listener(config.token_listen, None),) if config.token_listen else ()
        return Security(None, listeners, None, tokens)
    directory = config.effective_tls_dir
    tls = TlsConfig.from_dir(directory, "broker")
    tls.check()
    listeners = ()
    if config.token_listen:
        listeners = (
            Listener(config.token_listen, TlsConfig.from_dir(directory, "broker", require_client_cert=False)),
        )
    return Security(tls, listeners, ClientTls.from_dir(directory, "broker"), tokens)


def _organisation() -> str:
    """The organisation of the call being served (after authentication; "" before)."""
    principal = current_principal()
    return principal.organization_id if principal is not None else ""


def _warn_if_keys_beside_database(config: BrokerConfig) -> None:
    """Say so when a copy of the SQLite database's folder would carry the keys that guard it."""
    url = normalise_url(config.effective_database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    folder = Path(url.database).expanduser().resolve().parent
    keys = config.keys_dir.expanduser().resolve()
    if keys == folder or folder in keys.parents:
        log.warning(
            "the keys are in the database's folder: a copy of that folder carries the pseudonym and "
            "reply keys with the data they protect; keep the database in a folder of its own",
            extra={"database_folder": str(folder), "keys": str(keys), "default": "VAR_DIR/db/onceonly.db"},
        )


def _warn_if_no_agreement(engine: sa.Engine) -> None:
    """A broker without any agreement denies every request: say so once, at start, with the fix."""
    with engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT count(*) FROM agreements")).scalar_one()
    if not recorded:
        log.warning(
            "no agreement is recorded: every request will be denied (PROCEDURE_NOT_AUTHORISED) until one "
            "is; import a governance file with `onceonly governance import FILE`, or start with "
            "--seed-agreements FILE (`--seed-agreements demo` for the demo's)",
            extra={"event": "no_agreements"},
        )


async def start_broker(
    config: BrokerConfig,
    *,
    provider_clients: dict[str, ProviderClient] | None = None,
    clock: Callable[[], dt.datetime] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> BrokerApp:
    """Start a broker from ``config``. Raises ``CatalogError`` if a provider disagrees with the catalog,
    ``PkiError`` if its certificates are missing, ``ValueError`` for insecure mode beyond loopback.

    ``clock`` and ``sleep`` are the time of its verifications and jobs (policy, leases, waiting for
    an agency that answers later): the real one unless a test simulates hours passing."""
    now = clock or (lambda: dt.datetime.now(dt.UTC))
    window_ms = config.ledger_commit_window_ms
    if not 0 <= window_ms <= 100:
        raise ValueError(f"ONCEONLY_LEDGER_COMMIT_WINDOW_MS must be between 0 and 100, got {window_ms:g}")
    if not 1 <= config.provider_batch <= 256:
        raise ValueError(f"ONCEONLY_PROVIDER_BATCH must be between 1 and 256, got {config.provider_batch}")
    if not 1 <= config.provider_calls_in_flight <= 64:
        raise ValueError(
            "ONCEONLY_PROVIDER_CALLS_IN_FLIGHT must be between 1 and 64, "
            f"got {config.provider_calls_in_flight}"
        )
    secured = security(config)
    catalog = Catalog.load(config.catalog_path)
    _warn_if_keys_beside_database(config)
    engine = create_engine(config.effective_database_url, busy_timeout_ms=config.db_busy_timeout_ms)
    await asyncio.to_thread(init_schema, engine)
    store = PolicyStore(engine)
    keys = KeyRing.from_directory(config.keys_dir / "signing")
    governance_log = GovernanceLog(lambda claims: keys.sign(claims, GOVERNANCE_TYPE))
    if config.agreements_seed is not None:
        count = await asyncio.to_thread(
            bootstrap,
            engine,
            config.agreements_seed,
            catalog,
            governance_log,
            dt.datetime.now(dt.UTC),
            WitnessLog(config.witness_file),
        )
        log.info("seed file recorded", extra={"file": str(config.agreements_seed), "changes": count})
    await asyncio.to_thread(_warn_if_no_agreement, engine)
    policy = PolicyHolder(store, catalog)
    chain_id = config.chain_id or chain_id_for(config.var_dir)
    witness = WitnessLog(config.witness_file)
    # Fail closed: never append to a chain the witness says was cut (ChainCut names what is wrong).
    await asyncio.to_thread(check_before_append, engine, witness, chain_id, keys.public_keys())
    cipher = ReplyCipher.from_key_file(config.keys_dir / "replies.key")
    ledger = SqlTraceLedger(
        engine,
        cipher,
        chain_id=chain_id,
        sign_checkpoint=lambda claims: keys.sign(claims, CHECKPOINT_TYPE),
        checkpoint_every=config.checkpoint_every,
        checkpoint_interval_s=config.checkpoint_interval_s,
        witness=witness,
        commit_window_s=config.ledger_commit_window_ms / 1000,
    )
    ledger.start()
    if provider_clients is None:
        unknown = sorted(set(config.providers) - set(catalog.providers))
        if unknown:
            log.warning("addresses given for providers not in the catalog", extra={"providers": unknown})
        breaker = breaker_settings(config)
        provider_clients = {
            pid: CircuitBreaker(
                GrpcProviderClient(
                    pid,
                    target,
                    tls=secured.provider_tls,
                    max_batch=config.provider_batch,
                    calls_in_flight=config.provider_calls_in_flight,
                ),
                pid,
                breaker,
            )
            for pid, target in config.providers.items()
            if pid in catalog.providers
        }
    pseudonymiser = SubjectPseudonymiser.from_key_file(config.keys_dir / "ledger.key")
    # Once per installation: the scan of every stored reply is not repeated at each start.
    keyed_marker = config.var_dir / "ledger" / "replies-keyed"
    if not keyed_marker.exists():
        rekeyed = await asyncio.to_thread(rekey_reply_digests, engine, pseudonymiser)
        if rekeyed:
            log.info("request digests of stored replies keyed", extra={"replies": rekeyed})
        keyed_marker.parent.mkdir(parents=True, exist_ok=True)
        keyed_marker.touch()
    quotas = SqlQuotas.beside(engine, config.db_busy_timeout_ms)
    service = VerificationService(
        catalog=catalog,
        policy=policy,
        providers=provider_clients,
        signer=AttestationSigner(keys, config.issuer),
        ledger=ledger,
        pseudonymiser=pseudonymiser,
        settings=ServiceSettings(
            provider_timeout_s=config.provider_timeout_ms / 1000,
            attestation_ttl=timedelta(seconds=config.attestation_ttl_s),
        ),
        # With the platform PKI, every provider answer must carry the provider's signature.
        evidence=None if secured.tls is None else EvidenceVerifier.from_ca_file(secured.tls.ca),
        quotas=quotas,
        clock=now,
        sleep=sleep or asyncio.sleep,
    )
    admission = (
        AdmissionControl(
            config.max_in_flight,
            retry_after_s=config.overload_retry_ms / 1000,
            bulk_wait_s=config.bulk_admission_wait_ms / 1000,
            org_share=config.bulk_org_share,
        )
        if config.max_in_flight > 0
        else None
    )
    interceptors: list[grpc.aio.ServerInterceptor] = []
    if admission is not None:
        interceptors.append(AdmissionInterceptor(admission, organisation=_organisation))
    if config.oversight_max_in_flight > 0:
        oversight_reads = AdmissionControl(
            config.oversight_max_in_flight,
            retry_after_s=config.overload_retry_ms / 1000,
            what="oversight reads",
        )
        interceptors.append(
            AdmissionInterceptor(oversight_reads, unary=(*OVERSIGHT_METHODS, *RESIDENT_METHODS), bulk=())
        )
    revocations = RevocationList.beside(secured.tls.ca) if secured.tls is not None else None
    peers = PeerConnections(config.max_connections_per_peer) if config.max_connections_per_peer > 0 else None
    interceptors.append(
        AuthInterceptor(
            secured.tokens,
            insecure=config.insecure,
            revocations=revocations,
            peers=peers,
            trusted=x509.load_pem_x509_certificates(secured.tls.ca.read_bytes()) if secured.tls else (),
        )
    )
    queries = SqlTraceQueries(engine, budget_s=config.oversight_query_timeout_ms / 1000)
    governance = GovernanceService(
        engine,
        governance_log,
        changed=policy.refresh,
        catalog=catalog,
        witness=witness,
    )
    jobs = JobStore(engine, cipher)
    broker_servicer = BrokerServicer(
        service,
        keys,
        jobs=jobs,
        retention_days=config.retention_days,
        job_wait_s=config.job_wait_s,
        clock=now,
    )
    try:
        states = await service.check_providers()
        server = await start_server(
            config.listen,
            [
                lambda s: broker_pb2_grpc.add_BrokerServicer_to_server(broker_servicer, s),
                lambda s: oversight_pb2_grpc.add_OversightServicer_to_server(
                    OversightServicer(
                        OversightService(queries, ledger, pseudonymiser, witness),
                        AuditSampling(engine, governance_log, witness=witness),
                        Proofs(engine, ledger, pseudonymiser=pseudonymiser, disclosures=queries.disclosures),
                    ),
                    s,
                ),
                lambda s: governance_pb2_grpc.add_GovernanceServicer_to_server(
                    GovernanceServicer(governance), s
                ),
                lambda s: resident_pb2_grpc.add_ResidentAccessServicer_to_server(
                    ResidentAccessServicer(
                        ResidentAccessService(
                            queries, ledger, pseudonymiser, catalog, retention_days=config.retention_days
                        )
                    ),
                    s,
                ),
            ],
            [SERVICE_NAME, OVERSIGHT_SERVICE_NAME, GOVERNANCE_SERVICE_NAME, RESIDENT_SERVICE_NAME],
            tls=secured.tls,
            also=secured.listeners,
            # Admission first: an overloaded broker refuses before doing any other work.
            interceptors=interceptors,
            options=(
                *(REUSE_PORT_OPTIONS if config.reuse_port else SERVER_OPTIONS),
                ("grpc.max_connection_idle_ms", max(1, round(config.connection_idle_s * 1000))),
            ),
        )
    except BaseException:
        await ledger.close()
        for client in provider_clients.values():
            await client.close()
        engine.dispose()
        raise
    app = BrokerApp(
        config, server, service, ledger, engine, policy, provider_clients, admission, quotas=quotas
    )
    if config.scsp_listen:
        try:
            app.scsp = await _start_scsp(
                config,
                secured,
                broker_servicer,
                service,
                engine,
                jobs,
                cipher,
                admission,
                revocations,
                catalog,
                now,
            )
        except BaseException:
            await app.stop(0)
            raise
    app.tasks.append(asyncio.create_task(policy.refresh_forever(config.policy_refresh_s)))
    app.tasks.append(asyncio.create_task(_watch_keys(keys, config.policy_refresh_s)))
    app.tasks.append(asyncio.create_task(_roll_up_usage(queries, USAGE_ROLL_UP_EVERY_S)))
    # Asynchronous verifications: this process works on jobs under its chain id (a lease).
    runner = JobRunner(
        jobs,
        broker_servicer.decide_job_subject,
        chain_id,
        now,
    )
    broker_servicer.runner = runner
    app.tasks.append(asyncio.create_task(runner.run_forever()))
    app.tasks.append(
        asyncio.create_task(
            report_health_forever(
                server.health,
                server.service_names,
                lambda: check_dependencies(
                    engine,
                    config.var_dir,
                    lambda: bool(keys.public_keys()),
                    app.circuits_open,
                ),
                config.health_check_s,
            )
        )
    )
    if engine.dialect.name == "postgresql":  # governance changes made through other replicas, at once
        app.tasks.append(
            asyncio.create_task(listen_for_changes(config.effective_database_url, policy.refresh))
        )
    log.info(
        "broker serving",
        extra={
            "target": server.target,
            "token_target": app.token_target,
            "security": "insecure" if config.insecure else "mtls",
            "jwt_issuers": list(secured.tokens.issuers) if secured.tokens else [],
            "database": _safe_url(config.effective_database_url),
            "providers": states,
        },
    )
    return app


async def _start_scsp(
    config: BrokerConfig,
    secured: Security,
    servicer: BrokerServicer,
    service: VerificationService,
    engine: sa.Engine,
    jobs: JobStore,
    cipher: ReplyCipher,
    admission: AdmissionControl | None,
    revocations: RevocationList | None,
    catalog: Catalog,
    clock: Callable[[], dt.datetime],
) -> HttpsServer:
    """The SCSP v3 facade on its own HTTPS listener (see :mod:`onceonly.broker.scsp`)."""
    from onceonly.broker.scsp import ScspFacade, ScspSettings, load_mapping
    from onceonly.broker.scsp_store import PetitionStore
    from onceonly.scsp.wssecurity import Seal

    if secured.tls is None:
        raise ValueError(
            "the SCSP facade (ONCEONLY_SCSP_LISTEN) needs the platform PKI: not in insecure mode"
        )
    directory = config.effective_tls_dir
    seal_cert, seal_key = cert_path(directory, BROKER_SEAL_NAME), key_path(directory, BROKER_SEAL_NAME)
    if not seal_cert.exists() or not seal_key.exists():
        raise PkiError(
            f"{seal_cert} does not exist: the SCSP facade signs its answers with the broker's seal; run "
            f"`onceonly pki issue --dir {directory} --role broker --org {BROKER_ORGANISATION} "
            f"--name {BROKER_SEAL_NAME} --key rsa`"
        )
    facade = ScspFacade(
        servicer,
        service,
        jobs,
        PetitionStore(engine, cipher),
        load_mapping(config.scsp_mapping, catalog),
        x509.load_pem_x509_certificates(secured.tls.ca.read_bytes()),
        revocations,
        Seal.from_pem(seal_cert.read_bytes(), seal_key.read_bytes()),
        settings=ScspSettings(
            allow_sha1=config.scsp_allow_sha1,
            max_body_bytes=config.scsp_max_body_bytes,
        ),
        admission=admission,
        clock=clock,
    )
    https = await start_https(
        facade.app(), config.scsp_listen, secured.tls, require_client_cert=True, what="the SCSP facade"
    )
    log.info("SCSP facade serving", extra={"url": f"{https.url}/scsp", "sha1": config.scsp_allow_sha1})
    return https


def breaker_settings(config: BrokerConfig) -> BreakerSettings:
    """The circuit-breaker and retry settings of every provider client."""
    return BreakerSettings(
        failures=config.breaker_failures,
        failure_rate=config.breaker_failure_rate,
        cooldown_s=config.breaker_cooldown_ms / 1000,
        retries=config.provider_retries,
    )


async def serve_broker(config: BrokerConfig) -> None:
    """Run a broker until SIGTERM or SIGINT."""
    telemetry.configure_tracing("onceonly-broker")
    metrics.configure_metrics("onceonly-broker")
    app = await start_broker(config)
    metrics.observe_breakers(app.circuits_open)
    await run_until_signal(app.server, config.shutdown_grace_s)
    await app.stop(0)


def _safe_url(url: str) -> str:
    """The database URL without its password, for logs."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)
