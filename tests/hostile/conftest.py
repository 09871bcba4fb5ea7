"""Hostile input: one platform per module, driven from synchronous hypothesis tests.

Hypothesis does not run coroutines, and starting providers and a broker for each of thousands
of examples would take minutes. So each test module starts one platform (three reference
providers, a broker over mutual TLS) on an event loop running in a thread of its own, and the
tests hand coroutines to that loop (:meth:`HostilePlatform.run`).

How many examples run is set by a hypothesis profile, chosen with ``HYPOTHESIS_PROFILE``:

* ``hostile`` (the default): a few thousand examples across the suite, about a minute on two
  cores; derandomised when ``CI=true`` so that a CI run is reproducible;
* ``deep`` (``make fuzz``): twenty times as many, random seeds;
* ``quick``: a tenth, while editing these tests.

Every test states its budget with :func:`examples`, which scales with the profile.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, event, settings
from hypothesis.control import currently_in_test_context

from onceonly.broker.app import BrokerApp
from onceonly.pki import ClientTls
from onceonly.v1 import broker_pb2, broker_pb2_grpc, oversight_pb2_grpc, provider_pb2_grpc
from tests.conftest import ORG, PROVIDER_IDS, Platform, health_stub, session_pki, verify_request

T = TypeVar("T")

_CI = os.environ.get("CI", "").lower() == "true"
_SCALE = {"hostile": 1.0, "deep": 20.0, "quick": 0.1}

settings.register_profile(
    "hostile",
    deadline=None,
    derandomize=_CI,
    database=None if _CI else settings().database,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile("deep", parent=settings.get_profile("hostile"), derandomize=False)
settings.register_profile("quick", parent=settings.get_profile("hostile"))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "hostile")
if PROFILE not in _SCALE:
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be one of {', '.join(_SCALE)}, not {PROFILE!r}")
settings.load_profile(PROFILE)


def examples(n: int) -> int:
    """``n`` examples in the default profile, scaled for ``deep`` and ``quick``."""
    return max(1, round(n * _SCALE[PROFILE]))


# --- what a deliberate answer looks like ----------------------------------------------------

NEVER = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
"""Codes that mean a bug leaked to the caller."""

_LEAKS = re.compile(
    r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|Unexpected <class|"
    r"\w+Error\(|/site-packages/|\.py\", line"
)

Outcome = tuple[grpc.StatusCode, str, status_pb2.Status | None]


def rich_status(metadata: Any) -> status_pb2.Status | None:
    for key, value in metadata or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


def error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def assert_deliberate(outcome: Outcome, allowed: frozenset[grpc.StatusCode], what: str = "") -> None:
    """The call ended with a status the product chose, and told the caller nothing internal."""
    code, details, status = outcome
    assert code not in NEVER, f"{what}: {code.name} {details!r}"
    assert code in allowed, f"{what}: unexpected {code.name} {details!r}"
    texts = [details] + ([status.message] if status is not None else [])
    for text in texts:
        assert not _LEAKS.search(text), f"{what}: internal detail reaches the caller: {text!r}"
    if code is grpc.StatusCode.UNAVAILABLE:
        # Deliberate only when the broker says why (e.g. LEDGER_UNAVAILABLE), not a dead server.
        assert error_info(status) is not None, f"{what}: UNAVAILABLE without ErrorInfo: {details!r}"


def assert_status_message(status: status_pb2.Status, what: str = "") -> None:
    """A ``google.rpc.Status`` carried in a message (a bulk result's error) is deliberate too."""
    assert status.code not in (grpc.StatusCode.UNKNOWN.value[0], grpc.StatusCode.INTERNAL.value[0]), (
        f"{what}: {status}"
    )
    assert not _LEAKS.search(status.message), (
        f"{what}: internal detail reaches the caller: {status.message!r}"
    )


async def call(start: Callable[[], Any]) -> tuple[Outcome, Any]:
    """Start a unary call (on the platform's loop: grpc.aio binds a call to the running loop) and
    await it; return ``((code, details, rich status), reply or None)``."""
    try:
        reply = await start()
    except grpc.aio.AioRpcError as exc:
        return (exc.code(), exc.details() or "", rich_status(exc.trailing_metadata())), None
    return (grpc.StatusCode.OK, "", None), reply


def record(label: str) -> None:
    """Count ``label`` in hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(label)


# --- the platform on a loop of its own ------------------------------------------------------


class HostilePlatform:
    """Providers and a broker on an event loop in a background thread, and channels to them."""

    def __init__(self, **broker_changes: Any) -> None:
        self._broker_changes = broker_changes
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="hostile-loop", daemon=True)
        self._thread.start()
        self._tmp = Path(tempfile.mkdtemp(prefix="onceonly-hostile-"))
        self.platform = Platform(self._tmp)
        self.calls = 0
        self.run(self._start(), timeout=60)
        # Client-streaming calls go through the synchronous API: the asyncio client reports
        # INTERNAL "Internal error from Core" instead of the server's status when the server ends
        # the call while requests are still being written (grpc/grpc#36066).
        self.sync_consumer = grpc.secure_channel(
            self.broker.target, session_pki().consumer(ORG).channel_credentials()
        )
        self.sync_broker_stub = broker_pb2_grpc.BrokerStub(self.sync_consumer)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the platform's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        p = self.platform
        await p.start_reference_providers()
        self.broker: BrokerApp = await p.start_broker(**self._broker_changes)
        pki = session_pki()
        self.consumer = p.channel(self.broker.target, tls=pki.consumer(ORG))
        self.oversight = p.channel(self.broker.target, tls=ClientTls.from_dir(pki.dir, "oversight"))
        provider_caller = pki.issue("hostile-provider-registry", role="provider", org="registry")
        self.as_provider = p.channel(self.broker.target, tls=provider_caller)
        self.governance_callers = {
            "operator": p.channel(self.broker.target, tls=ClientTls.from_dir(pki.dir, "operator")),
            "consumer-admin": p.channel(
                self.broker.target, tls=pki.issue("hostile-housing-admin", role="consumer-admin", org=ORG)
            ),
            "provider-admin": p.channel(
                self.broker.target, tls=pki.issue("hostile-tax-admin", role="provider-admin", org="tax")
            ),
            "oversight": self.oversight,
            "consumer": self.consumer,
        }
        self.broker_stub = broker_pb2_grpc.BrokerStub(self.consumer)
        self.oversight_stub = oversight_pb2_grpc.OversightStub(self.oversight)
        self.provider_channels = {
            pid: p.channel(p.providers[pid].target, tls=pki.broker) for pid in PROVIDER_IDS
        }
        self.provider_stubs = {
            pid: provider_pb2_grpc.ProviderStub(channel) for pid, channel in self.provider_channels.items()
        }

    def close(self) -> None:
        self.sync_consumer.close()
        try:
            self.run(self.platform.close(), timeout=60)
            self.run(self.loop.shutdown_asyncgens(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    # --- is it still serving? ----------------------------------------------------------------

    async def still_serving(self) -> None:
        """Health says SERVING everywhere, and a known-good Verify is answered with outcomes."""
        targets = [self.consumer, *self.provider_channels.values()]
        for channel in targets:
            reply = await health_stub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        request = verify_request(request_id=f"known-good-{uuid.uuid4().hex}")
        response: broker_pb2.VerifyResponse = await self.broker_stub.Verify(request, timeout=10)
        assert response.trace_id and len(response.outcomes) == len(request.checks)
        assert all(o.status == broker_pb2.CHECK_STATUS_VERIFIED for o in response.outcomes), response

    def tick(self, every: int = 100) -> None:
        """Count one example; every ``every`` examples, check the platform still serves."""
        self.calls += 1
        if self.calls % every == 0:
            self.run(self.still_serving())


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostilePlatform]:
    platform = HostilePlatform()
    try:
        yield platform
    finally:
        platform.close()


@pytest.fixture(autouse=True)
def _still_serving_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """After every test that used the platform: it still serves (health and a known-good Verify)."""
    yield
    if "hostile" in request.fixturenames:
        platform: HostilePlatform = request.getfixturevalue("hostile")
        platform.run(platform.still_serving())
