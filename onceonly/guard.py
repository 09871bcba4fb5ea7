"""Authenticating every call of a grpc.aio server in one place.

A :class:`GuardInterceptor` wraps each method handler of a server so that, before the
servicer runs, an ``authenticate(context, method)`` function establishes who is calling —
from the peer's client certificate (``context.auth_context()``) or from call metadata — and
stores the answer in a context variable the servicer reads. A refusal is a
:class:`~onceonly.errors.OnceOnlyError` (``Unauthenticated`` or ``PermissionDenied``): the call
ends through :func:`onceonly.status.abort`, with a ``google.rpc.ErrorInfo`` naming the reason;
nothing else (no stack trace) reaches the caller.

Health checking and server reflection stay open to any caller that completed the TLS
handshake: load balancers and ``grpcurl`` need them, and they reveal nothing about residents.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Generic, TypeVar

import grpc

from onceonly.errors import Internal, MalformedMessage, OnceOnlyError
from onceonly.grpc_types import Context, Handler
from onceonly.peers import PeerConnections, TooManyConnections
from onceonly.status import abort, code_name, grpc_status

log = logging.getLogger(__name__)

OPEN_METHOD_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
"""Methods every TLS peer may call without further authentication."""

INSECURE_ORG_HEADER = "x-onceonly-org"
FORWARDED_CERT_HEADER = "x-onceonly-forwarded-cert"
"""Metadata in which the web console relays the client certificate (DER, base64) of the person
signed in to it; the broker checks it (see ``onceonly.broker.auth``)."""
INSECURE_OFFICER_HEADER = "x-onceonly-officer"
INSECURE_ROLE_HEADER = "x-onceonly-role"
"""Metadata naming the caller in explicitly insecure (local development) mode only."""

T = TypeVar("T")


def peer_certificate(context: Context) -> bytes | None:
    """The PEM of the peer's verified client certificate, or ``None`` (no TLS, or no client certificate)."""
    values = context.auth_context().get("x509_pem_cert")
    return bytes(next(iter(values))) if values else None


def metadata_value(context: Context, key: str) -> str | None:
    """The first value of ``key`` in the call's metadata."""
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


Authenticate = Callable[[Context, str], T]


class GuardInterceptor(grpc.aio.ServerInterceptor, Generic[T]):
    """Run ``authenticate`` before every non-open method; store its result in ``var``."""

    def __init__(
        self,
        authenticate: Authenticate[T],
        var: contextvars.ContextVar[T | None],
        *,
        open_prefixes: Sequence[str] = OPEN_METHOD_PREFIXES,
        peers: PeerConnections | None = None,
    ) -> None:
        self._authenticate = authenticate
        self._peers = peers
        self._var = var
        self._open = tuple(open_prefixes)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._open):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def _enter(
        self, context: Context, method: str
    ) -> tuple[contextvars.Token[T | None], tuple[str, str] | None]:
        key = None
        if self._peers is not None:
            try:
                key = self._peers.enter(context.peer())
            except TooManyConnections as refusal:  # logged by PeerConnections, once a minute
                await abort(context, refusal)
        try:
            principal = self._authenticate(context, method)
        except OnceOnlyError as refusal:
            log.warning(
                "call refused",
                extra={
                    "rpc": method,
                    "code": code_name(refusal),
                    "reason": refusal.reason,
                    "detail": refusal.message,
                    "peer": context.peer(),
                },
            )
            self._release(key)
            await abort(context, refusal)
        except Exception:  # a bug in authentication: fail closed, say nothing revealing
            log.exception("authentication failed unexpectedly", extra={"rpc": method})
            self._release(key)
            await abort(context, Internal("internal error"))
        return self._var.set(principal), key

    def _release(self, key: tuple[str, str] | None) -> None:
        if key is not None and self._peers is not None:
            self._peers.leave(key)

    def _leave(self, token: contextvars.Token[T | None], key: tuple[str, str] | None) -> None:
        self._var.reset(token)
        self._release(key)

    def _wrap(self, handler: Handler, method: str) -> Handler:
        enter, leave = self._enter, self._leave
        options = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            inner_uu: Any = handler.unary_unary

            async def unary_unary(request: Any, context: Context) -> Any:
                token, key = await enter(context, method)
                try:
                    return await _maybe_await(inner_uu(request, context))
                finally:
                    leave(token, key)

            return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
        if handler.stream_unary is not None:
            inner_su: Any = handler.stream_unary

            async def stream_unary(requests: Any, context: Context) -> Any:
                token, key = await enter(context, method)
                try:
                    return await _maybe_await(inner_su(requests, context))
                finally:
                    leave(token, key)

            return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
        inner_stream: Any = (
            handler.unary_stream if handler.unary_stream is not None else handler.stream_stream
        )

        async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
            token, key = await enter(context, method)
            try:
                result = inner_stream(request, context)
                if hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                elif hasattr(result, "__iter__"):  # a synchronous generator
                    for item in result:
                        yield item
                else:  # a servicer that writes with context.write and returns nothing
                    await _maybe_await(result)
            finally:
                leave(token, key)

        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(streaming, **options)
        return grpc.stream_stream_rpc_method_handler(streaming, **options)


async def _maybe_await(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value


# --- undecodable requests -------------------------------------------------------------------


class _Undecodable:
    """What a guarded deserializer returns for bytes that are not a valid request message."""

    __slots__ = ()


_UNDECODABLE = _Undecodable()


class DecodeGuard(grpc.aio.ServerInterceptor):
    """End a call whose request bytes do not parse with ``INVALID_ARGUMENT`` (``MALFORMED_MESSAGE``).

    Left to itself, grpcio answers a request it cannot deserialize with ``UNKNOWN`` and the
    parser's exception text. Every server installs this guard first (:func:`onceonly.serving.start_server`):
    the deserializer never raises, and the handler aborts with a deliberate status before the
    servicer sees anything (for a request stream, when the bad message is read).
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler: Handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _guard_decoding(handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _guard_decoding(handler: Handler) -> Handler:
    parse: Any = handler.request_deserializer
    owner = getattr(parse, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    status = grpc_status(MalformedMessage(getattr(descriptor, "full_name", "request")))

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # DecodeError, bad UTF-8, recursion limit: the caller's bytes, not our bug
            return _UNDECODABLE

    options = {"request_deserializer": deserialize, "response_serializer": handler.response_serializer}

    async def requests(iterator: Any, context: Context) -> AsyncIterator[Any]:
        async for request in iterator:
            if request is _UNDECODABLE:
                await abort(context, status)
            yield request

    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: Context) -> Any:
            if request is _UNDECODABLE:
                await abort(context, status)
            return await _maybe_await(inner_uu(request, context))

        return grpc.unary_unary_rpc_method_handler(unary_unary, **options)
    if handler.stream_unary is not None:
        inner_su: Any = handler.stream_unary

        async def stream_unary(iterator: Any, context: Context) -> Any:
            return await _maybe_await(inner_su(requests(iterator, context), context))

        return grpc.stream_unary_rpc_method_handler(stream_unary, **options)
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if request is _UNDECODABLE:
                await abort(context, status)
            async for item in _responses(inner_us(request, context)):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, **options)
    inner_ss: Any = handler.stream_stream

    async def stream_stream(iterator: Any, context: Context) -> AsyncIterator[Any]:
        async for item in _responses(inner_ss(requests(iterator, context), context)):
            yield item

    return grpc.stream_stream_rpc_method_handler(stream_stream, **options)


async def _responses(result: Any) -> AsyncIterator[Any]:
    """The responses of a streaming handler, however it produces them."""
    if hasattr(result, "__aiter__"):
        async for item in result:
            yield item
    elif hasattr(result, "__iter__"):  # a synchronous generator
        for item in result:
            yield item
    else:  # a servicer that writes with context.write and returns nothing
        await _maybe_await(result)
