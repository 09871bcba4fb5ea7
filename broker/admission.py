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
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import grpc
from google.rpc import status_pb2

from onceonly import metrics
from onceonly.errors import OnceOnlyError, ResourceExhausted
from onceonly.grpc_types import Context, Handler
from onceonly.status import abort, grpc_status, status_for

log = logging.getLogger(__name__)

UNARY_METHODS = ("/onceonly.v1.Broker/Verify",)
BULK_METHODS = ("/onceonly.v1.Broker/VerifyBulk",)
OVERSIGHT_METHODS = tuple(
    f"/onceonly.v1.Oversight/{m}"
    for m in (
        "ListTraces",
        "GetUsage",
        "GetResidentReport",
        "GetWitnessedHeads",
        "QueryUsage",
        "DrawAuditSample",
        "ListAuditTasks",
        "JustifyAuditTask",
        "GetProof",
        "VerifyProof",
    )
)
RESIDENT_METHODS = ("/onceonly.v1.ResidentAccess/ListMyAccesses",)
_WARN_EVERY_S = 1.0


class Overloaded(ResourceExhausted):
    """No capacity is free: a call refused at once, or a bulk stream whose wait ran out."""

    reason = "OVERLOADED"

    def __init__(self, limit: int, retry_after_s: float, what: str = "verifications") -> None:
        ms = max(1, round(retry_after_s * 1000))
        super().__init__(
            f"the broker is at capacity ({limit} {what} in flight); "
            f"nothing was decided or traced, retry in {ms} ms",
            retry_after_s=retry_after_s,
            metadata={"max_in_flight": str(limit)},
        )


def overloaded_status(limit: int, retry_after_s: float) -> status_pb2.Status:
    """The status a refused call ends with."""
    return status_for(Overloaded(limit, retry_after_s))


class ClientNotReading(ResourceExhausted):
    """A bulk stream's client read no result for the whole write budget: the stream is ended."""

    reason = "CLIENT_NOT_READING"

    def __init__(self, wait_s: float) -> None:
        super().__init__(
            f"the client read no result for {wait_s * 1000:.0f} ms; the stream was ended and its "
            "capacity freed: resume it by request id (subjects already answered are not decided again)",
            metadata={"bulk_admission_wait_ms": str(round(wait_s * 1000))},
        )


class AdmissionControl:
    """Counts verifications in flight against ``limit``; bulk units also per organisation."""

    def __init__(
        self,
        limit: int,
        *,
        retry_after_s: float = 0.2,
        bulk_wait_s: float = 5.0,
        org_share: float = 0.5,
        what: str = "verifications",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be at least 1")
        if not 0 < org_share <= 1:
            raise ValueError("the organisation share must be above 0 and at most 1")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.bulk_wait_s = bulk_wait_s
        self.org_limit = max(1, math.floor(limit * org_share))
        """The most units one organisation's bulk streams may hold at once."""
        self.in_flight = 0
        self.rejected = 0
        """Calls and bulk streams refused since start."""
        self.peak = 0
        """The highest ``in_flight`` seen."""
        self.held: Counter[str] = Counter()
        """Units held by each organisation's bulk streams."""
        self._waiters: deque[tuple[asyncio.Future[None], str]] = deque()
        self._clock = clock
        self._warned_at = -_WARN_EVERY_S
        self._rejected_at_warning = 0
        self.what = what
        self.status = grpc_status(Overloaded(limit, retry_after_s, what))
        """The (prebuilt) ``grpc.Status`` of a refusal."""

    def _someone_may_go_first(self) -> bool:
        """A waiting bulk reader that a free unit would go to (its organisation is under its share)."""
        return any(not f.done() and self.held[org] < self.org_limit for f, org in self._waiters)

    def try_enter(self) -> bool:
        """Take a unit if one is free; count a refusal otherwise."""
        if self.in_flight >= self.limit or (self._waiters and self._someone_may_go_first()):
            self._refused()
            return False
        self._take("")
        return True

    def has_room(self) -> bool:
        return self.in_flight < self.limit and not (self._waiters and self._someone_may_go_first())

    def _take(self, org: str | None) -> None:
        self.in_flight += 1
        if org:
            self.held[org] += 1
        if self.in_flight > self.peak:
            self.peak = self.in_flight

    async def enter(self, wait_s: float, org: str = "") -> None:
        """Take a unit for a bulk subject of ``org``, waiting up to ``wait_s`` for one (while the
        broker is full, or ``org`` holds its share); ``Overloaded`` if none came."""
        if (
            self.in_flight < self.limit
            and self.held[org] < self.org_limit
            and not (self._waiters and self._someone_may_go_first())
        ):
            self._take(org)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (waiter, org)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, wait_s)
            return
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the unit was handed over just as the wait ended: keep it
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave(1, org)  # handed over, but the stream is going away: give it back
            raise
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        self._refused()
        raise Overloaded(self.limit, self.retry_after_s, self.what)

    def leave(self, units: int = 1, org: str = "") -> None:
        """Give back ``units`` (of ``org``'s bulk streams, if named); hand them to waiting bulk
        readers first, in arrival order, skipping those whose organisation holds its share."""
        self.in_flight -= units
        if org:
            self.held[org] -= units
            if self.held[org] <= 0:
                del self.held[org]
        for entry in list(self._waiters):
            if self.in_flight >= self.limit:
                break
            waiter, waiting_org = entry
            if waiter.done():
                self._waiters.remove(entry)
            elif self.held[waiting_org] < self.org_limit:
                self._waiters.remove(entry)
                self._take(waiting_org)
                waiter.set_result(None)

    def _refused(self) -> None:
        self.rejected += 1
        metrics.admission_rejected(self.what)
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
        organisation: Callable[[], str] = lambda: "",
    ) -> None:
        self.control = control
        self._organisation = organisation
        """The organisation of the call being served (known after authentication)."""
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
        control, inner, organisation = self.control, cast(Any, handler.stream_stream), self._organisation

        async def stream_stream(requests: AsyncIterator[Any], context: Context) -> None:
            if not control.has_room():
                control._refused()
                await abort(context, control.status)
            held = 0
            ended = False
            org = ""

            async def admitted() -> AsyncIterator[Any]:
                # The first message is the header; every later one becomes exactly one result.
                # The caller is known once the header has passed authentication.
                nonlocal held, org
                header = True
                async for message in requests:
                    if not header:
                        org = org or organisation()
                        await control.enter(control.bulk_wait_s, org)
                        if ended:  # the stream ended while this reader waited
                            control.leave(1, org)
                            return
                        held += 1
                    header = False
                    yield message

            refusal: OnceOnlyError | None = None
            results = inner(admitted(), context)
            try:
                async for result in results:
                    # A unit is held until its result is on the wire: a client that stops reading
                    # stops freeing capacity, so its stream ends once a write waits too long.
                    try:
                        await asyncio.wait_for(context.write(result), control.bulk_wait_s)
                    except TimeoutError:
                        refusal = ClientNotReading(control.bulk_wait_s)
                        log.warning(
                            "bulk stream ended: its client stopped reading",
                            extra={"org": org, "held": held, "peer": context.peer()},
                        )
                        break
                    if held:
                        held -= 1
                        control.leave(1, org)
            except Overloaded as exc:
                refusal = exc
            finally:
                ended = True
                if held:
                    control.leave(held, org)
                    held = 0
                if hasattr(results, "aclose"):
                    await results.aclose()
            if refusal is not None:
                await abort(context, refusal)

        return grpc.stream_stream_rpc_method_handler(
            stream_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
