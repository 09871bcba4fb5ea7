"""A provider failing in any way costs only that provider's checks, with a clear outcome.

Down, slower than its deadline, answering malformed data, answering with evidence that fails
its signature check, flapping: the other providers' checks are verified as usual, the failed
ones say why (``UNAVAILABLE``/``TIMEOUT``/``ERROR``) with no attestation, every answer is
traced, and the provider's circuit breaker opens (fast failure), half-opens and closes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from google.protobuf import struct_pb2

from onceonly.broker.app import BrokerApp
from onceonly.broker.breaker import BreakerState
from onceonly.consumers.client import BrokerClient, Verification
from onceonly.evidence import EvidenceSigner
from onceonly.providers.reference import reference_adapter
from onceonly.providers.sdk import SERVICE_NAME, AttestQuery, ProviderServicer, start_provider
from onceonly.serving import RunningServer, start_server
from onceonly.v1 import provider_pb2, provider_pb2_grpc
from tests.conftest import (
    INCOME,
    RESIDENCE,
    TAX_COMPLIANCE,
    UNEMPLOYMENT,
    CountingAdapter,
    Platform,
    SlowAdapter,
    WrappedAdapter,
    resident,
    verify_kwargs,
)

pytestmark = pytest.mark.faults

BREAKER = {"breaker_failures": 3, "breaker_cooldown_ms": 300}
TAX_CHECKS = (TAX_COMPLIANCE, INCOME)


def statuses(v: Verification) -> dict[str, str]:
    return {o.certificate_type_id: o.status for o in v.outcomes}


def assert_only_tax_failed(platform: Platform, v: Verification, status: str) -> None:
    """The tax checks failed with ``status`` and no attestation; the others were verified; traced."""
    got = statuses(v)
    assert {c: got[c] for c in TAX_CHECKS} == dict.fromkeys(TAX_CHECKS, status), got
    assert got[RESIDENCE] == got[UNEMPLOYMENT] == "VERIFIED", got
    for o in v.outcomes:
        assert bool(o.attestation) == (o.status == "VERIFIED")
        assert o.status == "VERIFIED" or o.detail
    (row,) = platform.trace_rows(trace_id=v.trace_id)
    traced = {o["certificate_type_id"]: o["status"] for o in json.loads(row["outcomes"])}
    assert traced == got


async def until(predicate: Any, timeout: float, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(every)


async def start_broker(platform: Platform, **changes: Any) -> tuple[BrokerApp, BrokerClient]:
    app = await platform.start_broker(**{**BREAKER, **changes})
    return app, platform.client(app)


async def test_provider_down_fails_fast_once_its_circuit_opens_and_recovers_by_itself(
    platform: Platform,
) -> None:
    await platform.start_reference_providers()
    app, client = await start_broker(platform)
    breaker = app.breakers["tax"]
    kwargs = verify_kwargs(resident())
    assert all(o.verified for o in (await client.verify(**kwargs)).outcomes)

    port = platform.providers["tax"].port
    await platform.providers["tax"].stop(0)
    # Two tax checks per request: the third failed check opens the circuit.
    for _ in range(2):
        assert_only_tax_failed(platform, await client.verify(**kwargs), "UNAVAILABLE")
    assert breaker.state is BreakerState.OPEN

    fast = await client.verify(**kwargs)
    assert_only_tax_failed(platform, fast, "UNAVAILABLE")
    for c in TAX_CHECKS:  # no connection attempt, no retry pause
        assert "circuit open" in fast.outcome(c).detail and fast.outcome(c).latency_ms < 100

    # The provider comes back on its address: after the cool-down a probe closes the circuit.
    restarted = await start_provider(
        reference_adapter("tax"), f"127.0.0.1:{port}", tls=platform.pki.server_tls("tax")
    )
    platform.adopt_provider("tax", restarted)

    async def verified() -> bool:
        return all(o.verified for o in (await client.verify(**kwargs)).outcomes)

    await until(verified, 15, every=0.2)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.opened >= 1


async def test_provider_slower_than_its_deadline_times_out_and_is_not_retried(platform: Platform) -> None:
    counting = CountingAdapter(reference_adapter("employment"))
    await platform.start_reference_providers(employment=SlowAdapter(counting, delay_s=30))
    app, client = await start_broker(platform, provider_timeout_ms=300, breaker_failures=2)
    kwargs = verify_kwargs(resident())

    for _ in range(2):
        started = time.perf_counter()
        v = await client.verify(**kwargs)
        assert 0.25 < time.perf_counter() - started < 3
        assert statuses(v)[UNEMPLOYMENT] == "TIMEOUT"
        assert all(o.verified for o in v.outcomes if o.certificate_type_id != UNEMPLOYMENT)
    assert counting.calls == 0  # still sleeping in SlowAdapter: counted only after the delay
    assert app.breakers["employment"].state is BreakerState.OPEN
    assert app.breakers["employment"].retried == 0  # a timeout spent the deadline: no retry

    v = await client.verify(**kwargs)
    assert statuses(v)[UNEMPLOYMENT] == "UNAVAILABLE"
    assert "circuit open" in v.outcome(UNEMPLOYMENT).detail
    assert v.outcome(UNEMPLOYMENT).latency_ms < 100  # instead of waiting out the 300 ms deadline
    assert len(platform.trace_rows()) == 3


class Flaky(WrappedAdapter):
    """Fails every check (the SDK answers INTERNAL) while ``failing`` is set."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.failing = False
        self.calls = 0

    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        self.calls += 1
        if self.failing:
            raise RuntimeError("backend connection pool exhausted")
        return await super().attest(query)


async def test_flapping_provider_opens_half_opens_and_closes(platform: Platform) -> None:
    flaky = Flaky(reference_adapter("tax"))
    await platform.start_reference_providers(tax=flaky)
    app, client = await start_broker(platform)
    breaker = app.breakers["tax"]
    kwargs = verify_kwargs(resident())
    seen: list[BreakerState] = []

    async def call() -> Verification:
        v = await client.verify(**kwargs)
        seen.append(breaker.state)
        return v

    for cycle in range(2):  # down, probe fails, up, probe succeeds — twice
        flaky.failing = True
        while breaker.state is BreakerState.CLOSED:
            assert_only_tax_failed(platform, await call(), "ERROR")
        calls = flaky.calls
        assert_only_tax_failed(platform, await call(), "UNAVAILABLE")  # fast: not asked
        assert flaky.calls == calls
        await asyncio.sleep(0.35)
        assert breaker.state is BreakerState.HALF_OPEN
        await call()  # the probe reaches the provider and fails: open again
        assert breaker.state is BreakerState.OPEN and flaky.calls == calls + 1
        flaky.failing = False
        await asyncio.sleep(0.35)
        v = await call()  # one of its two tax checks is the probe; the other fails fast meanwhile
        assert sorted(statuses(v)[c] for c in TAX_CHECKS) == ["UNAVAILABLE", "VERIFIED"]
        assert breaker.state is BreakerState.CLOSED
        v = await call()
        assert all(o.verified for o in v.outcomes), statuses(v)
        assert breaker.opened == 2 * (cycle + 1)
    assert BreakerState.OPEN in seen and seen[-1] is BreakerState.CLOSED


# --- providers that answer, but wrongly ---------------------------------------------------------


class NoResult(ProviderServicer):
    """Answers with an empty message: no result at all."""

    async def _attest(self, request: provider_pb2.AttestRequest) -> provider_pb2.AttestResponse:
        return provider_pb2.AttestResponse()


class WrongClaims(ProviderServicer):
    """Answers claims of the wrong type, properly signed."""

    async def _attest(self, request: provider_pb2.AttestRequest) -> provider_pb2.AttestResponse:
        claims = {"compliant": "perhaps", "below_threshold": "perhaps", "fiscal_year": "last year"}
        query = self._query(request, self._supported[request.certificate_type_id])
        struct = struct_pb2.Struct()
        struct.update(claims)
        return provider_pb2.AttestResponse(
            result=provider_pb2.AttestResponse.RESULT_FOUND,
            claims=struct,
            evidence=self._sign(request, query, True, claims),
        )


class ForgedEvidence(ProviderServicer):
    """Changes its answer after signing it: the evidence no longer covers the claims."""

    async def _attest(self, request: provider_pb2.AttestRequest) -> provider_pb2.AttestResponse:
        reply = await super()._attest(request)
        for key, value in reply.claims.items():
            if isinstance(value, bool):
                reply.claims[key] = not value
        return reply


async def start_lying_tax(platform: Platform, servicer_class: type[ProviderServicer]) -> RunningServer:
    tls = platform.pki.server_tls("tax")
    servicer = servicer_class(reference_adapter("tax"), EvidenceSigner.from_tls(tls))
    running = await start_server(
        "127.0.0.1:0",
        [lambda s: provider_pb2_grpc.add_ProviderServicer_to_server(servicer, s)],
        [SERVICE_NAME],
        tls=tls,
    )
    platform.adopt_provider("tax", running)
    return running


@pytest.mark.parametrize(
    ("servicer", "detail"),
    [
        (NoResult, "without a result"),
        (WrongClaims, "malformed claims"),
        (ForgedEvidence, "evidence rejected"),
    ],
)
async def test_provider_answering_wrongly_costs_only_its_checks(
    platform: Platform, servicer: type[ProviderServicer], detail: str
) -> None:
    for pid in ("registry", "employment"):
        await platform.start_provider(reference_adapter(pid))
    await start_lying_tax(platform, servicer)
    app, client = await start_broker(platform)
    v = await client.verify(**verify_kwargs(resident()))
    assert_only_tax_failed(platform, v, "ERROR")
    assert all(detail in v.outcome(c).detail for c in TAX_CHECKS), [o.detail for o in v.outcomes]
    # A malformed reply, malformed claims and forged evidence are all provider faults: whether the
    # transport sees them or the broker finds them after the call, they count toward the breaker.
    one_tax_check: list[tuple[str, dict[str, str]]] = [(TAX_COMPLIANCE, {})]
    for _ in range(3):
        await client.verify(**verify_kwargs(resident(), checks=one_tax_check))
    assert app.breakers["tax"].state is BreakerState.OPEN
