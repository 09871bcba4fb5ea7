"""The edge of the error model: every error leaves a call here, and only here.

:func:`status_for` turns an exception into a ``google.rpc.Status`` through one table, from the
kind of :class:`~onceonly.errors.OnceOnlyError` to its gRPC code and the builder of its rich
details; :func:`abort` ends a call with it. The broker's services, the oversight service, the
provider SDK and every interceptor use these two. Anything that is not an ``OnceOnlyError`` is
a bug: it is logged here and the caller gets ``INTERNAL`` with nothing revealing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from onceonly.errors import (
    ERROR_DOMAIN,
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MalformedMessage,
    NotFound,
    OnceOnlyError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from onceonly.grpc_types import Context
from onceonly.wire import DENIAL_REASON

log = logging.getLogger(__name__)
R = TypeVar("R")

DetailsBuilder = Callable[[OnceOnlyError], Iterable[message.Message]]


def _none(_: OnceOnlyError) -> Iterable[message.Message]:
    return ()


def _bad_request(exc: OnceOnlyError) -> Iterable[message.Message]:
    assert isinstance(exc, InvalidArgument)
    yield error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in exc.violations
        ]
    )


def _resource_info(exc: OnceOnlyError) -> Iterable[message.Message]:
    assert isinstance(exc, NotFound)
    yield error_details_pb2.ResourceInfo(
        resource_type=exc.resource_type, resource_name=exc.resource_name, description=exc.description
    )
    if exc.field:
        yield error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
            ]
        )


def _precondition_failure(exc: OnceOnlyError) -> Iterable[message.Message]:
    assert isinstance(exc, PermissionDenied | FailedPrecondition)
    if exc.violations:
        yield error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type=v.rule, subject=v.subject, description=v.description
                )
                for v in exc.violations
            ]
        )


def _retry_info(exc: OnceOnlyError) -> Iterable[message.Message]:
    assert isinstance(exc, ResourceExhausted)
    if exc.retry_after_s is not None:
        ms = max(1, round(exc.retry_after_s * 1000))
        yield error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)
        )
    if exc.quota_violations:
        yield error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(subject=v.field, description=v.description)
                for v in exc.quota_violations
            ]
        )


ERROR_TABLE: dict[type[OnceOnlyError], tuple[int, DetailsBuilder]] = {
    InvalidArgument: (code_pb2.INVALID_ARGUMENT, _bad_request),
    MalformedMessage: (code_pb2.INVALID_ARGUMENT, _none),
    NotFound: (code_pb2.NOT_FOUND, _resource_info),
    AlreadyExists: (code_pb2.ALREADY_EXISTS, _none),
    Unauthenticated: (code_pb2.UNAUTHENTICATED, _none),
    PermissionDenied: (code_pb2.PERMISSION_DENIED, _precondition_failure),
    FailedPrecondition: (code_pb2.FAILED_PRECONDITION, _precondition_failure),
    Unavailable: (code_pb2.UNAVAILABLE, _none),
    ResourceExhausted: (code_pb2.RESOURCE_EXHAUSTED, _retry_info),
    Internal: (code_pb2.INTERNAL, _none),
}
"""Kind of error → (gRPC code, builder of the details after ``ErrorInfo``); the nearest kind wins."""

_INTERNAL = Internal("internal error")


def _entry(exc: OnceOnlyError) -> tuple[int, DetailsBuilder]:
    for kind in type(exc).__mro__:
        entry = ERROR_TABLE.get(kind)
        if entry is not None:
            return entry
    return ERROR_TABLE[Internal]


def _error_info(exc: OnceOnlyError) -> error_details_pb2.ErrorInfo:
    metadata = dict(exc.metadata)
    if isinstance(exc, PermissionDenied) and exc.violations:
        # The denial reason's DenialReason number too, for clients that switch on the enum.
        number = DENIAL_REASON.number(exc.reason)
        if number:
            metadata["denial_reason"] = str(number)
    return error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN, metadata=metadata)


def status_for(exc: BaseException) -> status_pb2.Status:
    """The ``google.rpc.Status`` that ``exc`` maps to (``INTERNAL`` for anything unplanned)."""
    error = exc if isinstance(exc, OnceOnlyError) else _INTERNAL
    code, details = _entry(error)
    packed = []
    for detail in (_error_info(error), *details(error)):
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=code, message=error.message, details=packed)


def code_name(exc: BaseException) -> str:
    """The name of the gRPC code that ``exc`` maps to (``PERMISSION_DENIED``), for logs."""
    code = _entry(exc)[0] if isinstance(exc, OnceOnlyError) else code_pb2.INTERNAL
    return str(code_pb2.Code.Name(code))


def grpc_status(exc: BaseException) -> grpc.Status:
    """:func:`status_for` as the ``grpc.Status`` that ``abort_with_status`` takes (prebuild it once
    for a refusal that repeats, such as overload)."""
    return rpc_status.to_status(status_for(exc))


async def abort(context: Context, error: BaseException | grpc.Status) -> NoReturn:
    """End the call with the status that ``error`` maps to (or with a status prebuilt by
    :func:`grpc_status`, for a refusal that repeats on a hot path); log it if it was not planned."""
    if isinstance(error, BaseException):
        if not isinstance(error, OnceOnlyError):
            log.error("unexpected error", exc_info=error)
        error = grpc_status(error)
    await context.abort_with_status(error)
    raise AssertionError("unreachable")  # pragma: no cover - abort_with_status raises


def answers(
    method: Callable[[Any, Any, Context], Awaitable[R]],
) -> Callable[[Any, Any, Context], Awaitable[R]]:
    """A servicer method whose every failure ends its call through :func:`abort`: an error raised
    on purpose with its status and details, anything else as ``INTERNAL`` (and logged)."""

    @functools.wraps(method)
    async def answered(self: Any, request: Any, context: Context) -> R:
        try:
            return await method(self, request, context)
        except Exception as exc:
            await abort(context, exc)

    return answered
