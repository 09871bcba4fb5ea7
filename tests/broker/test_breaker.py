"""The circuit breaker's state machine and retry rules, against a scripted provider client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import pytest

from onceonly.broker.breaker import BreakerSettings, BreakerState, CircuitBreaker
from onceonly.broker.domain import DocumentType, LegalBasisKind, SubjectId
from onceonly.broker.providers import (
    ProviderAnswer,
    ProviderClient,
    ProviderDescription,
    ProviderError,
    ProviderQuery,
    ProviderTimeout,
    ProviderUnavailable,
)

QUERY = ProviderQuery(
    "req-1",
    "trace-1",
    "tax.compliance/v1",
    SubjectId(DocumentType.DNI, "12345678Z"),
    {},
    "L01280796",
    "HOUSING-RENT-SUBSIDY",
    LegalBasisKind.LAW,
)
FOUND = ProviderAnswer(True, {"compliant": True})
NOT_FOUND = ProviderAnswer(False, {})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Scripted(ProviderClient):
    """Answers (or raises) whatever ``script`` returns for each call; counts calls."""

    def __init__(self, script: Callable[[int], ProviderAnswer | BaseException]) -> None:
        self.script = script
        self.calls = 0
        self.timeouts: list[float] = []

    async def describe(self, timeout: float) -> ProviderDescription:
        return ProviderDescription("tax", "Tax", ())

    async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer:
        self.calls += 1
        self.timeouts.append(timeout)
        result = self.script(self.calls)
        if isinstance(result, BaseException):
            raise result
        return result


def down() -> ProviderUnavailable:
    return ProviderUnavailable("provider answered UNAVAILABLE: connection refused", retryable=True)


def breaker(inner: ProviderClient, clock: Clock, **settings: float) -> CircuitBreaker:
    values = {"failures": 3, "failure_rate": 0.0, "cooldown_s": 5.0, "retries": 0, "retry_pause_s": 0.0}
    values.update(settings)
    return CircuitBreaker(inner, "tax", BreakerSettings(**values), clock=clock)  # type: ignore[arg-type]


async def test_consecutive_failures_open_the_circuit_and_it_fails_fast() -> None:
    clock = Clock()
    inner = Scripted(lambda n: ProviderTimeout("provider did not answer within its deadline"))
    cb = breaker(inner, clock)
    for _ in range(3):
        with pytest.raises(ProviderTimeout):
            await cb.attest(QUERY, 1.0)
    assert cb.state is BreakerState.OPEN and cb.opened == 1
    with pytest.raises(ProviderUnavailable, match="circuit open for provider tax"):
        await cb.attest(QUERY, 1.0)
    assert inner.calls == 3  # the provider was not asked again
    assert cb.fast_failures == 1


async def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = Clock()
    healthy = False
    gate = asyncio.Event()

    class Probe(Scripted):
        async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer:
            if healthy:
                await gate.wait()
            return await super().attest(query, timeout)

    inner = Probe(lambda n: FOUND if healthy else down())
    cb = breaker(inner, clock)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await cb.attest(QUERY, 1.0)
    assert cb.state is BreakerState.OPEN
    clock.now += 5.0
    assert cb.state is BreakerState.HALF_OPEN
    healthy = True
    probe = asyncio.create_task(cb.attest(QUERY, 1.0))
    await asyncio.sleep(0)
    # While the probe is out, everyone else still fails fast.
    with pytest.raises(ProviderUnavailable, match="half-open"):
        await cb.attest(QUERY, 1.0)
    gate.set()
    assert await probe == FOUND
    assert cb.state is BreakerState.CLOSED
    assert await cb.attest(QUERY, 1.0) == FOUND


async def test_a_failed_probe_opens_the_circuit_for_another_cooldown() -> None:
    clock = Clock()
    inner = Scripted(lambda n: down())
    cb = breaker(inner, clock)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await cb.attest(QUERY, 1.0)
    clock.now += 5.0
    with pytest.raises(ProviderUnavailable, match="connection refused"):
        await cb.attest(QUERY, 1.0)  # the probe reached the provider, and failed
    assert cb.state is BreakerState.OPEN and cb.opened == 2
    assert inner.calls == 4
    clock.now += 4.9
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        await cb.attest(QUERY, 1.0)


async def test_a_cancelled_probe_does_not_wedge_the_circuit() -> None:
    clock = Clock()
    hang = asyncio.Event()
    fail = True

    class Hanging(Scripted):
        async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer:
            if not fail:
                await hang.wait()
            return await super().attest(query, timeout)

    inner = Hanging(lambda n: down() if fail else FOUND)
    cb = breaker(inner, clock)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable):
            await cb.attest(QUERY, 1.0)
    clock.now += 5.0
    fail = False
    probe = asyncio.create_task(cb.attest(QUERY, 1.0))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    hang.set()
    assert await cb.attest(QUERY, 1.0) == FOUND  # the next call is the probe
    assert cb.state is BreakerState.CLOSED


async def test_answers_and_refused_questions_are_not_faults() -> None:
    clock = Clock()
    answers: list[ProviderAnswer | BaseException] = [
        down(),
        down(),
        NOT_FOUND,  # an answer: the provider works
        down(),
        down(),
        ProviderError("provider answered INVALID_ARGUMENT: bad parameter", provider_fault=False),
        down(),
        down(),
        down(),
    ]
    inner = Scripted(lambda n: answers[n - 1])
    cb = breaker(inner, clock)
    for i, answer in enumerate(answers):
        if isinstance(answer, BaseException):
            with pytest.raises(type(answer)):
                await cb.attest(QUERY, 1.0)
        else:
            assert await cb.attest(QUERY, 1.0) == answer
        # Never three provider faults in a row until the very last one.
        assert cb.state is (BreakerState.OPEN if i == len(answers) - 1 else BreakerState.CLOSED)


async def test_failure_rate_opens_a_flapping_provider() -> None:
    clock = Clock()
    inner = Scripted(lambda n: down() if n % 2 else FOUND)  # every other call fails
    cb = breaker(inner, clock, failures=5, failure_rate=0.5, window=10)
    for _ in range(12):
        with contextlib.suppress(ProviderUnavailable):
            await cb.attest(QUERY, 1.0)
    # Never two faults in a row, but half of the last 10 calls failed: open after call 11.
    assert cb.state is BreakerState.OPEN
    assert inner.calls == 11 and cb.fast_failures == 1


async def test_unavailable_is_retried_once_within_the_deadline() -> None:
    clock = Clock()
    inner = Scripted(lambda n: down() if n == 1 else FOUND)
    cb = breaker(inner, clock, retries=1, retry_pause_s=0.01)
    assert await cb.attest(QUERY, 2.0) == FOUND
    assert inner.calls == 2 and cb.retried == 1
    assert cb.snapshot()["consecutive_failures"] == 0


async def test_no_retry_without_time_left_or_after_a_timeout() -> None:
    clock = Clock()
    inner = Scripted(lambda n: down())
    cb = breaker(inner, clock, retries=1, retry_pause_s=0.01)
    with pytest.raises(ProviderUnavailable):
        await cb.attest(QUERY, 0.05)  # 0.05 s left: not enough for another attempt
    assert inner.calls == 1
    timeouts = Scripted(lambda n: ProviderTimeout("provider did not answer within its deadline"))
    cb = breaker(timeouts, clock, retries=3, retry_pause_s=0.0)
    with pytest.raises(ProviderTimeout):
        await cb.attest(QUERY, 2.0)
    assert timeouts.calls == 1  # the deadline is spent: never asked again


async def test_a_retry_gets_only_what_is_left_of_the_deadline() -> None:
    clock = Clock()

    def script(n: int) -> ProviderAnswer | BaseException:
        clock.now += 0.5  # the failed attempt took half a second
        return down() if n == 1 else FOUND

    inner = Scripted(script)
    cb = breaker(inner, clock, retries=1, retry_pause_s=0.0)
    assert await cb.attest(QUERY, 2.0) == FOUND
    assert inner.timeouts == [2.0, pytest.approx(1.5)]


async def test_state_changes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    inner = Scripted(lambda n: down() if n <= 3 else FOUND)
    cb = breaker(inner, clock)
    with caplog.at_level(logging.INFO, logger="onceonly.broker.breaker"):
        for _ in range(3):
            with pytest.raises(ProviderUnavailable):
                await cb.attest(QUERY, 1.0)
        clock.now += 5.0
        await cb.attest(QUERY, 1.0)
    changes = [
        (r.previous_state, r.state)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "provider circuit state changed"
    ]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(r.provider == "tax" for r in caplog.records if hasattr(r, "provider"))


async def test_record_failure_counts_faults_found_after_the_call() -> None:
    clock = Clock()
    cb = breaker(Scripted(lambda n: FOUND), clock)
    for _ in range(3):
        await cb.attest(QUERY, 1.0)
        cb.record_failure("provider evidence rejected: bad signature")
    assert cb.state is BreakerState.OPEN


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        BreakerSettings(failure_rate=1.5)
    with pytest.raises(ValueError):
        BreakerSettings(failures=-1)
