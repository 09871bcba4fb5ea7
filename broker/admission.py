"""Overload shedding: a bound on the work the broker takes on at once.

Beyond its capacity a server that queues every call answers all of them late — past their
deadlines, after the callers gave up — and needs ever more memory. The broker instead keeps
a count of the verifications in flight and refuses the ones beyond ``max_in_flight``
immediately with ``RESOURCE_EXHAUSTED``, a ``google.rpc.ErrorInfo`` (reason ``OVERLOADED``)
and a ``google.rpc.RetryInfo`` saying when to try again. Nothing is traced for a refused
call: nothing was decided. As calls finish, capacity frees up and new calls are admitted
again; there is nothing to reset.

* ``Verify``: one unit for the whole call; refused at once when none is free.
* ``VerifyBulk``: a new stream is refused at once when no unit is free. Each subject read
  from an admitted stream takes one unit until its result is sent. When none is free the
  stream's reader waits (gRPC flow control then slows the client) — for at most
  ``bulk_wait_s``; after that the stream ends with ``RESOURCE_EXHAUSTED`` and the client
  resumes it by request id (subjects already answered are not decided again).

The count is a plain integer touched only on the event loop: no lock on the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import grpc
from google.rpc import status_pb2

from onceonly.errors import ResourceExhausted
from onceonly.grpc_types import Context, Handler
from onceonly.status import abort, grpc_status, status_for

log = logging.getLogger(__name__)

UNARY_METHODS = ("/onceonly.v1.Broker/Verify",)
BULK_METHODS = ("/onceonly.v1.Broker/VerifyBulk",)
_WARN_EVERY_S = 1.0


class Overloaded(ResourceExhausted):
    """No capacity is free: a call refused at once, or a bulk stream whose wait ran out."""

    reason = "OVERLOADED"

    def __init__(self, limit: int, retry_after_s: float) -> None:
        ms = max(1, round(retry_after_s * 1000))
        super().__init__(
            f"the broker is at capacity ({limit} verifications in flight); "
            f"nothing was decided or traced, retry in {ms} ms",
            retry_after_s=retry_after_s,
            metadata={"max_in_flight": str(limit)},
        )


def overloaded_status(limit: int, retry_after_s: float) -> status_pb2.Status:
    """The status a refused call ends with."""
    return status_for(Overloaded(limit, retry_after_s))


class AdmissionControl:
    """Counts verifications in flight against ``limit``."""

    def __init__(
        self,
        limit: int,
        *,
        retry_after_s: float = 0.2,
        bulk_wait_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.bulk_wait_s = bulk_wait_s
        self.in_flight = 0
        self.rejected = 0
        """Calls and bulk streams refused since start."""
        self.peak = 0
        """The highest ``in_flight`` seen."""
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._clock = clock
        self._warned_at = -_WARN_EVERY_S
        self._rejected_at_warning = 0
        self.status = grpc_status(Overloaded(limit, retry_after_s))
        """The (prebuilt) ``grpc.Status`` of a refusal."""

    def try_enter(self) -> bool:
        """Take a unit if one is free; count a refusal otherwise."""
        if self.in_flight >= self.limit or self._waiters:
            self._refused()
            return False
        self.in_flight += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight
        return True

    def has_room(self) -> bool:
        return self.in_flight < self.limit and not self._waiters

    async def enter(self, wait_s: float) -> None:
        """Take a unit, waiting up to ``wait_s`` for one; ``Overloaded`` if none came."""
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, wait_s)
            return
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the unit was handed over just as the wait ended: keep it
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed over, but the stream is going away: give it back
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        self._refused()
        raise Overloaded(self.limit, self.retry_after_s)

    def leave(self, units: int = 1) -> None:
        """Give back ``units``; hand them to waiting bulk readers first, in arrival order."""
        self.in_flight -= units
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def _refused(self) -> None:
        self.rejected += 1
        now = self._clock()
        if now - self._warned_at >= _WARN_EVERY_S:
            log.warning(
                "shedding load",
                extra={
                    "in_flight": self.in_flight,
                    "max_in_flight": self.limit,
                    "refused": self.rejected - self._rejected_at_warning,
                },
            )
            self._warned_at = now
            self._rejected_at_warning = self.rejected


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    """Applies an :class:`AdmissionControl` to the broker's verification methods.

    Put it first in the server's interceptors, so that an overloaded broker refuses before
    doing any other work (authentication included).
    """

    def __init__(
        self,
        control: AdmissionControl,
        *,
        unary: Iterable[str] = UNARY_METHODS,
        bulk: Iterable[str] = BULK_METHODS,
    ) -> None:
        self.control = control
        self._unary = frozenset(unary)
        self._bulk = frozenset(bulk)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or (method not in self._unary and method not in self._bulk):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if method in self._unary and handler.unary_unary is not None:
            wrapped = self._wrap_unary(handler)
        elif method in self._bulk and handler.stream_stream is not None:
            wrapped = self._wrap_bulk(handler)
        else:
            return handler
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap_unary(self, handler: Handler) -> Handler:
        control, inner = self.control, cast(Any, handler.unary_unary)

        async def unary_unary(request: Any, context: Context) -> Any:
            if not control.try_enter():
                await abort(context, control.status)
            try:
                return await inner(request, context)
            finally:
                control.leave()

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap_bulk(self, handler: Handler) -> Handler:
        control, inner = self.control, cast(Any, handler.stream_stream)

        async def stream_stream(requests: AsyncIterator[Any], context: Context) -> Any:
            if not control.has_room():
                control._refused()
                await abort(context, control.status)
            held = 0
            ended = False

            async def admitted() -> AsyncIterator[Any]:
                # The first message is the header; every later one becomes exactly one result.
                nonlocal held
                header = True
                async for message in requests:
                    if not header:
                        await control.enter(control.bulk_wait_s)
                        if ended:  # the stream ended while this reader waited
                            control.leave()
                            return
                        held += 1
                    header = False
                    yield message

            overloaded = False
            try:
                async for result in inner(admitted(), context):
                    if held:
                        held -= 1
                        control.leave()
                    yield result
            except Overloaded:
                overloaded = True
            finally:
                ended = True
                if held:
                    control.leave(held)
                    held = 0
            if overloaded:
                await abort(context, control.status)

        return grpc.stream_stream_rpc_method_handler(
            stream_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
