"""Shared fixtures: reference providers, a broker on loopback and a client, all on port 0.

Everything is function-scoped: each test gets its own providers, its own broker with its
own SQLite file under ``tmp_path``, and everything is stopped at teardown — except the
certificates: one CA per test session (:func:`session_pki`), from which every server and
caller gets its certificate. Servers speak mutual TLS as in production; a client calls as
the housing office (``ORG``) unless a test says otherwise, and :meth:`Platform.stub` calls as
whichever organisation each request names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import socket
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2_grpc
from grpc_status import rpc_status

from onceonly.broker.app import BrokerApp, start_broker
from onceonly.broker.config import BrokerConfig, default_database_path
from onceonly.consumers.client import BrokerClient, BrokerError, Check, Consumer, LegalBasis, Purpose, Subject
from onceonly.pki import CertificateAuthority, ClientTls, TlsConfig, cert_path, init_pki
from onceonly.providers import synthetic
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import AttestQuery, CertificateTypeSupport, ProviderAdapter, start_provider
from onceonly.serving import RunningServer
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2

SEED = Path(str(resources.files("onceonly.broker").joinpath("data/agreements.toml")))
PROVIDER_IDS = ("registry", "tax", "employment")

ORG = "L01280796"
UNIT = "Housing subsidies"
OFFICER = "officer-17"
PROCEDURE = "HOUSING-RENT-SUBSIDY"
LAW = "Ley 39/2015 art. 28"
MUNICIPALITY = "28079"
THRESHOLD_EUR = 18_000

RESIDENCE = "registry.residence/v1"
HOUSEHOLD = "registry.household/v1"
TAX_COMPLIANCE = "tax.compliance/v1"
INCOME = "tax.income-below-threshold/v1"
UNEMPLOYMENT = "employment.unemployment-status/v1"
SOCIAL_SECURITY = "employment.social-security-compliance/v1"

HOUSING_CHECKS: tuple[tuple[str, dict[str, str]], ...] = (
    (RESIDENCE, {"municipality_code": MUNICIPALITY}),
    (TAX_COMPLIANCE, {}),
    (INCOME, {"threshold_eur": str(THRESHOLD_EUR)}),
    (UNEMPLOYMENT, {}),
)
"""The four checks of a rent-subsidy application."""


# --- residents ----------------------------------------------------------------------------


def known_everywhere(r: synthetic.Resident) -> bool:
    return r.known_to_registry and r.known_to_tax and r.known_to_employment


def resident(predicate: Any = None) -> synthetic.Resident:
    """A synthetic resident known to every agency (and matching ``predicate``)."""
    return synthetic.find(lambda r: known_everywhere(r) and (predicate is None or predicate(r)))


def expected_housing_claims(r: synthetic.Resident) -> dict[str, dict[str, Any]]:
    """What the reference adapters must attest for ``r`` for :data:`HOUSING_CHECKS`."""
    return {
        RESIDENCE: {"registered": r.municipality_code == MUNICIPALITY},
        TAX_COMPLIANCE: {"compliant": r.tax_compliant},
        INCOME: {
            "below_threshold": r.income(synthetic.LATEST_FISCAL_YEAR) < THRESHOLD_EUR,
            "fiscal_year": synthetic.LATEST_FISCAL_YEAR,
        },
        UNEMPLOYMENT: {"registered_unemployed": r.registered_unemployed},
    }


_DOC = {"DNI": common_pb2.DOCUMENT_TYPE_DNI, "NIE": common_pb2.DOCUMENT_TYPE_NIE}


def verify_request(
    r: synthetic.Resident | None = None,
    *,
    request_id: str | None = None,
    checks: Sequence[tuple[str, Mapping[str, str]]] = HOUSING_CHECKS,
    organization_id: str = ORG,
    procedure_code: str = PROCEDURE,
    law: str = LAW,
) -> broker_pb2.VerifyRequest:
    """A valid ``VerifyRequest`` (the housing checks under the seeded Madrid agreement)."""
    r = r or resident()
    return broker_pb2.VerifyRequest(
        request_id=request_id or uuid.uuid4().hex,
        consumer=common_pb2.Consumer(organization_id=organization_id, unit=UNIT, officer_id=OFFICER),
        purpose=common_pb2.Purpose(
            procedure_code=procedure_code,
            purpose_text="Rent subsidy application",
            case_file_id="EXP-2026-0001",
        ),
        legal_basis=common_pb2.LegalBasis(kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference=law),
        subject=common_pb2.Subject(document_type=_DOC[r.document_type], document_number=r.document_number),
        checks=[broker_pb2.Check(certificate_type_id=cid, parameters=dict(p)) for cid, p in checks],
    )


def verify_kwargs(
    r: synthetic.Resident | None = None,
    *,
    checks: Sequence[tuple[str, Mapping[str, str]]] = HOUSING_CHECKS,
    **changes: Any,
) -> dict[str, Any]:
    """Keyword arguments of ``BrokerClient.verify`` for a valid housing request."""
    r = r or resident()
    kwargs: dict[str, Any] = {
        "consumer": Consumer(ORG, UNIT, OFFICER),
        "purpose": Purpose(PROCEDURE, "Rent subsidy application", "EXP-2026-0001"),
        "legal_basis": LegalBasis.law(LAW),
        "subject": Subject(r.document_type, r.document_number),
        "checks": [Check(cid, dict(p)) for cid, p in checks],
    }
    kwargs.update(changes)
    return kwargs


# --- test adapters ------------------------------------------------------------------------


class WrappedAdapter(ProviderAdapter):
    """Serves what ``inner`` serves; subclasses change how it answers."""

    def __init__(self, inner: ProviderAdapter):
        self.inner = inner
        self.provider_id = inner.provider_id
        self.name = inner.name

    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        return self.inner.certificate_types()

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        return await self.inner.attest(query)


class CountingAdapter(WrappedAdapter):
    """Counts the checks it is asked."""

    def __init__(self, inner: ProviderAdapter):
        super().__init__(inner)
        self.calls = 0

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        self.calls += 1
        return await super().attest(query)


class SlowAdapter(WrappedAdapter):
    """Answers only after ``delay_s`` (longer than the broker's deadline in tests)."""

    def __init__(self, inner: ProviderAdapter, delay_s: float = 30.0):
        super().__init__(inner)
        self.delay_s = delay_s

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        await asyncio.sleep(self.delay_s)
        return await super().attest(query)


class GatedAdapter(WrappedAdapter):
    """Holds each answer until ``gate`` is set; ``entered`` is set once a call is waiting."""

    def __init__(self, inner: ProviderAdapter):
        super().__init__(inner)
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        self.entered.set()
        await self.gate.wait()
        return await super().attest(query)


# --- certificates ---------------------------------------------------------------------------


class SessionPki:
    """The test session's CA and the certificates issued from it, issued on first use."""

    def __init__(self, directory: Path):
        self.dir = directory
        init_pki(directory)  # ca, broker, registry/tax/employment, housing-office, oversight
        self.ca = CertificateAuthority.load_or_create(directory)

    def issue(self, name: str, *, role: str, org: str, server: bool = False) -> ClientTls:
        """Client credentials of ``name`` (issued once per session)."""
        if not cert_path(self.dir, name).exists():
            self.ca.issue(name, role=role, organization_id=org, server=server)
        return ClientTls.from_dir(self.dir, name)

    def consumer(self, org: str = ORG) -> ClientTls:
        """A consumer certificate of organisation ``org``."""
        return self.issue(f"consumer-{org}", role="consumer", org=org)

    @property
    def broker(self) -> ClientTls:
        """The broker's client credentials (the only ones a provider answers)."""
        return ClientTls.from_dir(self.dir, "broker")

    @property
    def ca_only(self) -> ClientTls:
        """Server-authenticating TLS without a client certificate."""
        return ClientTls(self.dir / "ca.pem")

    def server_tls(self, name: str) -> TlsConfig:
        """A provider server certificate for ``name`` (mutual TLS)."""
        self.issue(name, role="provider", org=name, server=True)
        return TlsConfig.from_dir(self.dir, name)


_session_pki: SessionPki | None = None


def session_pki() -> SessionPki:
    """The session's certificates; plain helpers (not only fixtures) may call this."""
    global _session_pki
    if _session_pki is None:
        _session_pki = SessionPki(Path(tempfile.mkdtemp(prefix="onceonly-test-pki-")))
    return _session_pki


@pytest.fixture(scope="session", autouse=True)
def pki() -> Iterator[SessionPki]:
    yield session_pki()
    global _session_pki
    if _session_pki is not None:
        shutil.rmtree(_session_pki.dir, ignore_errors=True)
        _session_pki = None


def cli_credentials_env(org: str = ORG) -> dict[str, str]:
    """Environment giving the ``onceonly`` client commands a consumer certificate of ``org``."""
    tls = session_pki().consumer(org)
    return {
        "ONCEONLY_TLS_CA": str(tls.ca),
        "ONCEONLY_TLS_CERT": str(tls.cert),
        "ONCEONLY_TLS_KEY": str(tls.key),
    }


def broker_channel(target: str) -> grpc.aio.Channel:
    """A channel to a provider, authenticated as the broker (the only caller a provider answers)."""
    return grpc.aio.secure_channel(target, session_pki().broker.channel_credentials())


def provider_tls(adapter: ProviderAdapter) -> TlsConfig:
    """Server credentials for ``adapter``'s provider server."""
    return session_pki().server_tls(adapter.provider_id)


def provider_tls_args() -> list[str]:
    """``onceonly serve provider`` arguments using the session's certificates."""
    return ["--tls-dir", str(session_pki().dir)]


class ConsumerStub:
    """A Broker stub calling as the organisation each request names (one certificate per organisation).

    Most tests are about policy, not authentication: asking as another organisation means
    authenticating as it. Methods other than ``Verify`` call as ``ORG``.
    """

    def __init__(self, platform: Platform, target: str):
        self._platform = platform
        self._target = target
        self._stubs: dict[str, broker_pb2_grpc.BrokerAsyncStub] = {}

    def as_org(self, org: str) -> broker_pb2_grpc.BrokerAsyncStub:
        if org not in self._stubs:
            channel = self._platform.channel(self._target, tls=self._platform.pki.consumer(org))
            self._stubs[org] = broker_pb2_grpc.BrokerStub(channel)
        return self._stubs[org]

    def Verify(self, request: broker_pb2.VerifyRequest, **kwargs: Any) -> Any:
        return self.as_org(request.consumer.organization_id or ORG).Verify(request, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.as_org(ORG), name)


# --- the platform -------------------------------------------------------------------------


class Platform:
    """Starts providers, brokers and clients for one test and stops them all at teardown."""

    def __init__(self, tmp_path: Path):
        self.var_dir = tmp_path / "var"
        self.pki = session_pki()
        self.providers: dict[str, RunningServer] = {}
        self.adapters: dict[str, ProviderAdapter] = {}
        self._servers: list[RunningServer] = []
        self._brokers: list[BrokerApp] = []
        self._clients: list[BrokerClient] = []
        self._channels: list[grpc.aio.Channel] = []

    @property
    def db_path(self) -> Path:
        return default_database_path(self.var_dir)

    async def start_provider(self, adapter: ProviderAdapter) -> RunningServer:
        running = await start_provider(adapter, "127.0.0.1:0", tls=self.pki.server_tls(adapter.provider_id))
        self._servers.append(running)
        self.providers[adapter.provider_id] = running
        self.adapters[adapter.provider_id] = adapter
        return running

    def adopt_provider(self, provider_id: str, running: RunningServer) -> None:
        """Use a provider server started by the test itself (and stop it at teardown)."""
        self._servers.append(running)
        self.providers[provider_id] = running

    async def start_reference_providers(self, **adapters: ProviderAdapter) -> None:
        """Start the three providers: reference adapters unless replaced in ``adapters``."""
        for pid in PROVIDER_IDS:
            await self.start_provider(adapters.get(pid) or reference_adapter(pid))

    def config(self, **changes: Any) -> BrokerConfig:
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "var_dir": self.var_dir,
            "agreements_seed": SEED,
            "providers": {pid: p.target for pid, p in self.providers.items()},
            "shutdown_grace_s": 1.0,
            "tls_dir": self.pki.dir,
        }
        values.update(changes)
        return BrokerConfig(**values)

    async def start_broker(self, *, clock: Any = None, sleep: Any = None, **changes: Any) -> BrokerApp:
        app = await start_broker(self.config(**changes), clock=clock, sleep=sleep)
        self._brokers.append(app)
        return app

    def client(
        self, app: BrokerApp, timeout: float = 10.0, *, target: str | None = None, **credentials: Any
    ) -> BrokerClient:
        """A client of ``app`` (at ``target`` if given); by default with the housing office's
        (``ORG``) client certificate, otherwise with ``BrokerClient``'s credential arguments."""
        if not credentials:
            credentials = {"tls": self.pki.consumer(ORG)}
        client = BrokerClient(target or app.target, timeout=timeout, **credentials)
        self._clients.append(client)
        return client

    def stub(self, app: BrokerApp) -> broker_pb2_grpc.BrokerAsyncStub:
        """A raw stub of ``app`` that calls as the organisation each request names."""
        return ConsumerStub(self, app.target)  # type: ignore[return-value]

    def channel(self, target: str, tls: ClientTls | None = None) -> grpc.aio.Channel:
        """A mutual-TLS channel to ``target`` (as ``ORG`` unless ``tls`` says otherwise)."""
        credentials = (tls or self.pki.consumer(ORG)).channel_credentials()
        channel = grpc.aio.secure_channel(target, credentials)
        self._channels.append(channel)
        return channel

    def insecure_channel(self, target: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target)
        self._channels.append(channel)
        return channel

    def trace_rows(self, **where: str) -> list[sqlite3.Row]:
        return query(self.db_path, "trace_records", **where)

    def reply_rows(self) -> list[sqlite3.Row]:
        return query(self.db_path, "replies")

    async def close(self) -> None:
        for adapter in self.adapters.values():
            if isinstance(adapter, GatedAdapter):
                adapter.gate.set()
        for client in self._clients:
            await client.close()
        for channel in self._channels:
            await channel.close()
        for app in self._brokers:
            await app.stop(0)
        for server in self._servers:
            await server.stop(0)


def query(db_path: Path, table: str, **where: str) -> list[sqlite3.Row]:
    """Rows of ``table`` in the broker's SQLite file, read from a separate connection."""
    conn = sqlite3.connect(db_path)
    try:
        conn.row_factory = sqlite3.Row
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = f"SELECT * FROM {table}" + (f" WHERE {clause}" if clause else "")
        return conn.execute(sql, tuple(where.values())).fetchall()
    finally:
        conn.close()


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    p = Platform(tmp_path)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def broker(platform: Platform) -> BrokerApp:
    """A broker in front of the three reference providers, with the seeded agreements."""
    await platform.start_reference_providers()
    return await platform.start_broker()


@pytest.fixture
def client(platform: Platform, broker: BrokerApp) -> BrokerClient:
    return platform.client(broker)


@pytest.fixture
def stub(platform: Platform, broker: BrokerApp) -> broker_pb2_grpc.BrokerAsyncStub:
    return platform.stub(broker)


# --- error details ------------------------------------------------------------------------


@dataclasses.dataclass
class RpcFailure:
    """A failed call, with its rich error details unpacked."""

    code: grpc.StatusCode
    message: str
    info: error_details_pb2.ErrorInfo | None
    bad_request: error_details_pb2.BadRequest | None
    precondition: error_details_pb2.PreconditionFailure | None
    raw_details: bytes
    quota: error_details_pb2.QuotaFailure | None = None
    retry: error_details_pb2.RetryInfo | None = None

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.bad_request.field_violations] if self.bad_request else []


def rpc_failure(exc: grpc.aio.AioRpcError) -> RpcFailure:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    info = bad = pre = None
    quota, retry = None, None
    raw = b""
    if status is not None:
        raw = status.SerializeToString()
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                pre = error_details_pb2.PreconditionFailure()
                detail.Unpack(pre)
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                detail.Unpack(quota)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
    return RpcFailure(exc.code(), exc.details() or "", info, bad, pre, raw, quota, retry)


async def verify_failure(
    stub: broker_pb2_grpc.BrokerAsyncStub, request: broker_pb2.VerifyRequest
) -> RpcFailure:
    """Call Verify, expecting it to fail; return the failure."""
    try:
        reply = await stub.Verify(request, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return rpc_failure(exc)
    raise AssertionError(f"Verify succeeded but should have failed: {reply}")


async def expect_broker_error(coro: Any) -> BrokerError:
    try:
        await coro
    except BrokerError as err:
        return err
    raise AssertionError("the call succeeded but should have failed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health_stub(channel: grpc.aio.Channel) -> Any:
    """``grpc.health.v1.Health`` on ``channel`` (its published stubs declare no methods)."""
    return health_pb2_grpc.HealthStub(channel)


def reflection_stub(channel: grpc.aio.Channel) -> Any:
    """Server reflection (``v1alpha``) on ``channel`` (its published stubs expect a sync channel)."""
    return reflection_pb2_grpc.ServerReflectionStub(cast(Any, channel))
