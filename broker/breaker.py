"""Circuit breakers around provider clients: a failing provider costs a fast failure, not a wait.

A :class:`CircuitBreaker` wraps any :class:`~broker.providers.ProviderClient` (in the broker:
one per provider around its :class:`~broker.providers.GrpcProviderClient`) and is itself a
``ProviderClient``, so the core does not know it is there.

* **closed** — calls go through. A call that fails with a provider fault (``UNAVAILABLE``,
  ``TIMEOUT``, ``ERROR``; never ``SUBJECT_NOT_FOUND``, which is an answer, nor a question the
  provider refused as malformed) counts against the provider. ``failures`` consecutive faults,
  or a fault rate of at least ``failure_rate`` over the last ``window`` calls, open the circuit.
* **open** — calls fail at once with :class:`~broker.providers.ProviderUnavailable`
  ("circuit open …"), so the check's outcome is ``UNAVAILABLE`` within microseconds instead of
  after a connect failure or a whole deadline, for ``cooldown_s``.
* **half-open** — after the cool-down, one call goes through as a probe while the others still
  fail fast; its success closes the circuit, its failure opens it for another cool-down.

Retries: a call that failed with a transport ``UNAVAILABLE`` (no connection: the question did
not reach the adapter; ``Attest`` is a read-only question in any case) is asked again up to
``retries`` times after ``retry_pause_s`` — long enough for the channel's first reconnection
attempt after a provider restart — and only while the circuit is closed and enough of the
check's deadline remains. A ``TIMEOUT`` is never retried: the deadline is spent.

Every state change is logged (``provider circuit state changed``, with the provider, the old
and new state and why) and visible as :attr:`CircuitBreaker.state` / :meth:`snapshot`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from onceonly.broker.providers import (
    ProviderAnswer,
    ProviderClient,
    ProviderDescription,
    ProviderError,
    ProviderQuery,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_ATTEMPT_S = 0.1
"""A retry is only made if at least this much of the deadline is left after the pause."""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5
    """Consecutive provider faults that open the circuit (0: never on consecutive faults)."""
    failure_rate: float = 0.5
    """...or this share of faults over the last ``window`` calls (0: never on the rate)."""
    window: int = 20
    """Calls the fault rate is measured over; the rate rule applies once the window is full."""
    cooldown_s: float = 5.0
    """How long an open circuit fails fast before letting one probe through."""
    retries: int = 1
    """Extra attempts after a transport ``UNAVAILABLE`` (0: none)."""
    retry_pause_s: float = 0.25
    """Pause before a retry (the channel's first reconnection attempt is after ~0.2 s)."""

    def __post_init__(self) -> None:
        if self.failures < 0 or self.retries < 0 or self.window < 1:
            raise ValueError("breaker failures and retries must be >= 0 and window >= 1")
        if not 0 <= self.failure_rate <= 1:
            raise ValueError("breaker failure_rate must be between 0 and 1")
        if self.cooldown_s < 0 or self.retry_pause_s < 0:
            raise ValueError("breaker cool-down and retry pause must be >= 0")


class CircuitBreaker(ProviderClient):
    """A :class:`ProviderClient` that stops calling a failing provider for a while."""

    def __init__(
        self,
        inner: ProviderClient,
        provider_id: str,
        settings: BreakerSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.provider_id = provider_id
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._consecutive = 0
        self._consecutive_before_success = 0
        self._recent: deque[bool] = deque(maxlen=self.settings.window)  # True: a fault
        self._open_until = 0.0
        self._probing = False
        self._last_error = ""
        self.opened = 0
        """How many times the circuit has opened (for tests and logs)."""
        self.fast_failures = 0
        """Calls refused without asking the provider."""
        self.retried = 0
        """Retries made after a transport ``UNAVAILABLE``."""

    # -- the port -------------------------------------------------------------------------

    async def describe(self, timeout: float) -> ProviderDescription:
        return await self._guarded(lambda t: self.inner.describe(t), timeout, retry=False)

    async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer:
        return await self._guarded(lambda t: self.inner.attest(query, t), timeout, retry=True)

    async def collect(self, ticket: str, timeout: float) -> ProviderAnswer:
        return await self._guarded(lambda t: self.inner.collect(ticket, t), timeout, retry=True)

    async def close(self) -> None:
        await self.inner.close()

    # -- state ----------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose cool-down is over reads as half-open."""
        if self._state is BreakerState.OPEN and self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return self._state

    def snapshot(self) -> dict[str, Any]:
        """State and counters, for logs and tests."""
        return {
            "provider": self.provider_id,
            "state": self.state.value,
            "consecutive_failures": self._consecutive,
            "opened": self.opened,
            "fast_failures": self.fast_failures,
            "retried": self.retried,
            "last_error": self._last_error,
        }

    def record_failure(self, why: str) -> None:
        """Count a fault found after the call returned (e.g. provider evidence that fails its
        signature check): the caller of :meth:`attest` reports it here, and the answer it had
        counted as a success counts as a fault instead."""
        if self._recent and not self._recent[-1]:
            self._recent.pop()
            self._consecutive = self._consecutive_before_success
        self._fault(why, probe=False)

    # -- mechanics ------------------------------------------------------------------------

    async def _guarded(self, call: Callable[[float], Awaitable[T]], timeout: float, *, retry: bool) -> T:
        probe = self._admit()
        deadline = self._clock() + timeout
        attempts = 0
        try:
            while True:
                try:
                    result = await call(max(0.0, deadline - self._clock()))
                except ProviderError as exc:
                    pause = self.settings.retry_pause_s
                    if (
                        retry
                        and exc.retryable
                        and attempts < self.settings.retries
                        and self._state is BreakerState.CLOSED
                        and deadline - self._clock() - pause >= MIN_ATTEMPT_S
                    ):
                        attempts += 1
                        self.retried += 1
                        await asyncio.sleep(pause)
                        continue
                    if exc.provider_fault:
                        self._fault(str(exc), probe)
                    else:
                        self._success(probe)  # the provider answered; the question was at fault
                    probe = False
                    raise
                self._success(probe)
                probe = False
                return result
        finally:
            if probe:  # cancelled mid-probe: neither a success nor a fault; the next call probes
                self._probing = False

    def _admit(self) -> bool:
        """Let a call through (True if it is the half-open probe) or raise ``ProviderUnavailable``."""
        if self._state is BreakerState.CLOSED:
            return False
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now < self._open_until:
                self.fast_failures += 1
                raise ProviderUnavailable(
                    f"circuit open for provider {self.provider_id} after repeated failures "
                    f"(last: {self._last_error}); next probe in {self._open_until - now:.1f}s"
                )
            self._change(BreakerState.HALF_OPEN, "cool-down over: probing")
        if self._probing:
            self.fast_failures += 1
            raise ProviderUnavailable(
                f"circuit half-open for provider {self.provider_id}: waiting for a probe call"
            )
        self._probing = True
        return True

    def _success(self, probe: bool) -> None:
        self._consecutive_before_success = self._consecutive
        self._consecutive = 0
        self._recent.append(False)
        if probe:
            self._probing = False
            if self._state is BreakerState.HALF_OPEN:
                self._recent.clear()
                self._change(BreakerState.CLOSED, "probe succeeded")

    def _fault(self, why: str, probe: bool) -> None:
        self._last_error = why[:200]
        self._consecutive += 1
        self._recent.append(True)
        s = self.settings
        if probe:
            self._probing = False
            if self._state is BreakerState.HALF_OPEN:
                self._open("probe failed")
            return
        if self._state is not BreakerState.CLOSED:
            return
        if s.failures and self._consecutive >= s.failures:
            self._open(f"{self._consecutive} consecutive failures")
        elif s.failure_rate and len(self._recent) == s.window:
            faults = sum(self._recent)
            if faults >= s.failure_rate * s.window:
                self._open(f"{faults} failures in the last {s.window} calls")

    def _open(self, why: str) -> None:
        self._open_until = self._clock() + self.settings.cooldown_s
        self.opened += 1
        self._change(BreakerState.OPEN, why)

    def _change(self, state: BreakerState, why: str) -> None:
        previous, self._state = self._state, state
        (log.warning if state is BreakerState.OPEN else log.info)(
            "provider circuit state changed",
            extra={
                "provider": self.provider_id,
                "previous_state": previous.value,
                "state": state.value,
                "why": why,
                "last_error": self._last_error,
                "cooldown_s": self.settings.cooldown_s,
            },
        )
