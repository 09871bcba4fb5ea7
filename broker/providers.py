"""The broker's side of the provider contract: a port and its gRPC implementation.

The core calls :class:`ProviderClient` and knows nothing of gRPC; one
:class:`GrpcProviderClient` per provider keeps one channel open for the broker's life.

**Batching.** At most ``calls_in_flight`` calls to one provider are under way at once
(:data:`DEFAULT_CALLS_IN_FLIGHT`). A check asked while there is room leaves at once (with the others
asked in the same turn of the event loop): at low load nothing waits. Checks asked while the calls
are full wait for one to return, then leave together in one ``AttestBatch`` call: under load, or in
a bulk stream, one call carries many, and the broker and the provider spend their time on answers,
not on calls. A check asked alone is an ``Attest`` as before; a provider that does not serve
``AttestBatch`` is asked one check at a time from then on. Each answer is still the provider's own,
with its own evidence, checked as any.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from onceonly import telemetry
from onceonly.broker.domain import LegalBasisKind, SubjectId
from onceonly.fields import FieldSpec, FieldType
from onceonly.guard import INSECURE_ROLE_HEADER
from onceonly.pki import ClientTls
from onceonly.serving import MAX_MESSAGE_BYTES
from onceonly.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from onceonly.wire import DOCUMENT_TYPE, LEGAL_BASIS_KIND, PARAMETER_TYPE

log = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 64
"""Checks per ``AttestBatch`` call at most (``ONCEONLY_PROVIDER_BATCH``; 1: no batching)."""
DEFAULT_CALLS_IN_FLIGHT = 2
"""Calls to one provider under way at once, when batching (``ONCEONLY_PROVIDER_CALLS_IN_FLIGHT``):
beyond, checks wait for one to return and leave together. Fewer make larger batches (more
throughput); more let a slow answer hold fewer checks back (a batch returns with its slowest)."""


class ProviderError(Exception):
    """A provider call failed; ``status`` is the check outcome it leads to.

    ``retryable`` is true only for a transport ``UNAVAILABLE`` (as a rule: no connection, the
    question never reached the adapter). ``Attest`` is a read-only question, so asking again
    at worst has the provider answer it twice; a ``DEADLINE_EXCEEDED`` is never retryable.
    ``provider_fault`` is false when the provider refused this one question as malformed
    (``INVALID_ARGUMENT``): the provider itself is healthy, so a circuit breaker ignores it.
    """

    status = "ERROR"

    def __init__(self, *args: object, retryable: bool = False, provider_fault: bool = True) -> None:
        super().__init__(*args)
        self.retryable = retryable
        self.provider_fault = provider_fault


class ProviderTimeout(ProviderError):
    status = "TIMEOUT"


class ProviderUnavailable(ProviderError):
    status = "UNAVAILABLE"


class TicketUnknown(ProviderError):
    """``Collect`` with a ticket the provider no longer knows (it restarted): ask ``Attest`` again."""

    status = "ERROR"

    def __init__(self, *args: object) -> None:
        super().__init__(*args, provider_fault=False)


@dataclass(frozen=True, slots=True)
class ProviderQuery:
    request_id: str
    trace_id: str
    certificate_type_id: str
    subject: SubjectId
    parameters: Mapping[str, str]
    consumer_organization_id: str
    procedure_code: str
    legal_basis_kind: LegalBasisKind


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    found: bool
    claims: Mapping[str, Any]
    evidence: str = ""
    ready_at: datetime | None = None
    """The provider answers later (``Attest`` said PENDING): collect with ``ticket`` from then."""
    ticket: str = ""


@dataclass(frozen=True, slots=True)
class ProvidedType:
    """What a provider says it serves for one certificate type."""

    certificate_type_id: str
    parameters: tuple[FieldSpec, ...]
    claims: tuple[FieldSpec, ...]


@dataclass(frozen=True, slots=True)
class ProviderDescription:
    provider_id: str
    name: str
    certificate_types: tuple[ProvidedType, ...]
    evidence_certificate: str = ""


class ProviderClient(abc.ABC):
    """How the broker reaches one provider."""

    @abc.abstractmethod
    async def describe(self, timeout: float) -> ProviderDescription: ...

    @abc.abstractmethod
    async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer: ...

    async def collect(self, ticket: str, timeout: float) -> ProviderAnswer:
        """The answer to a check the provider deferred (see ``ProviderAnswer.ready_at``)."""
        raise ProviderError("this provider does not answer later")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection."""


CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Reconnect quickly after a provider restarts: it costs one check, not a minute.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def _fields(specs: Any) -> tuple[FieldSpec, ...]:
    return tuple(
        FieldSpec(s.name, PARAMETER_TYPE.from_proto(s.type) or FieldType.STRING, s.required, s.description)
        for s in specs
    )


class GrpcProviderClient(ProviderClient):
    """A provider reached over gRPC through one long-lived channel.

    With ``tls`` (the broker's client certificate and the platform CA) the channel is mutual
    TLS and the provider knows it is the broker calling; without it the channel is plaintext
    and says so in ``x-onceonly-role`` metadata (insecure local development only).
    """

    def __init__(
        self,
        provider_id: str,
        target: str,
        *,
        tls: ClientTls | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        calls_in_flight: int = DEFAULT_CALLS_IN_FLIGHT,
    ):
        self.provider_id = provider_id
        self.target = target
        self._max_batch = max(1, max_batch)
        self._calls_in_flight = max(1, calls_in_flight)
        self._waiting: list[
            tuple[provider_pb2.AttestRequest, float, asyncio.Future[provider_pb2.AttestResponse]]
        ] = []
        self._flush_scheduled = False
        self._batching = self._max_batch > 1
        """False once the provider answered ``AttestBatch`` UNIMPLEMENTED."""
        self._sending: set[asyncio.Task[None]] = set()
        """The calls under way (at most ``calls_in_flight`` while batching)."""
        if tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
            self._metadata: tuple[tuple[str, str], ...] | None = ((INSECURE_ROLE_HEADER, "broker"),)
        else:
            self._channel = grpc.aio.secure_channel(
                target, tls.channel_credentials(), options=CHANNEL_OPTIONS
            )
            self._metadata = None
        self._stub = provider_pb2_grpc.ProviderStub(self._channel)

    def _call_metadata(self) -> tuple[tuple[str, str], ...] | None:
        """The insecure-mode role header (if any) and the trace context (if tracing is on)."""
        traced = telemetry.inject_metadata()
        if self._metadata is None:
            return traced
        return self._metadata + traced if traced else self._metadata

    async def describe(self, timeout: float) -> ProviderDescription:
        try:
            reply = await self._stub.Describe(
                provider_pb2.DescribeRequest(), timeout=timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise _map_rpc_error(exc) from None
        return ProviderDescription(
            reply.provider_id,
            reply.name,
            tuple(
                ProvidedType(t.certificate_type_id, _fields(t.parameters), _fields(t.claims))
                for t in reply.certificate_types
            ),
            reply.evidence_certificate,
        )

    async def attest(self, query: ProviderQuery, timeout: float) -> ProviderAnswer:
        request = provider_pb2.AttestRequest(
            request_id=query.request_id,
            trace_id=query.trace_id,
            certificate_type_id=query.certificate_type_id,
            subject=common_pb2.Subject(
                document_type=DOCUMENT_TYPE.to_proto(query.subject.document_type),
                document_number=query.subject.document_number,
            ),
            parameters=dict(query.parameters),
            consumer_organization_id=query.consumer_organization_id,
            procedure_code=query.procedure_code,
            legal_basis_kind=LEGAL_BASIS_KIND.to_proto(query.legal_basis_kind),
        )
        if not self._batching:
            return _answer(await self._attest_one(request, timeout))
        traced = telemetry.inject_metadata()
        if traced:  # a batch's metadata carries one trace context: each check carries its own
            request.trace_context.update(traced)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[provider_pb2.AttestResponse] = loop.create_future()
        self._waiting.append((request, loop.time() + timeout, waiter))
        if not self._flush_scheduled and len(self._sending) < self._calls_in_flight:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:  # on a timeout (or the caller's cancellation) the waiter is cancelled: its answer is dropped
            reply = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise ProviderTimeout("provider did not answer within its deadline") from None
        return _answer(reply)

    async def _attest_one(
        self, request: provider_pb2.AttestRequest, timeout: float
    ) -> provider_pb2.AttestResponse:
        try:
            return await self._stub.Attest(request, timeout=timeout, metadata=self._call_metadata())
        except grpc.aio.AioRpcError as exc:
            raise _map_rpc_error(exc) from None

    def _flush(self) -> None:
        """Send what waits, while there is room for calls: alone as ``Attest``, together as batches."""
        self._flush_scheduled = False
        self._waiting = [w for w in self._waiting if not w[2].done()]  # its caller gave up waiting
        while self._waiting and len(self._sending) < self._calls_in_flight:
            chunk, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            task = asyncio.create_task(self._send(chunk))
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        """A call returned: room for the checks that waited for it."""
        self._sending.discard(task)
        if self._waiting and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def _send(
        self,
        chunk: Sequence[
            tuple[provider_pb2.AttestRequest, float, asyncio.Future[provider_pb2.AttestResponse]]
        ],
    ) -> None:
        loop = asyncio.get_running_loop()
        timeout = max(0.001, max(deadline for _, deadline, _ in chunk) - loop.time())
        if len(chunk) == 1 or not self._batching:
            await asyncio.gather(*(self._send_one(r, d, w) for r, d, w in chunk))
            return
        try:
            reply = await self._stub.AttestBatch(
                provider_pb2.AttestBatchRequest(checks=[r for r, _, _ in chunk]),
                timeout=timeout,
                metadata=self._call_metadata(),
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.info("provider answers one check at a time", extra={"provider": self.provider_id})
                self._batching = False
                await asyncio.gather(*(self._send_one(r, d, w) for r, d, w in chunk))
                return
            error = _map_rpc_error(exc)
            for _, _, waiter in chunk:
                if not waiter.done():
                    waiter.set_exception(error)
            return
        except BaseException as exc:  # cancelled with the broker: nobody waits any more
            for _, _, waiter in chunk:
                if not waiter.done():
                    waiter.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if len(reply.outcomes) != len(chunk):
            wrong = ProviderError(f"provider answered {len(reply.outcomes)} outcomes for {len(chunk)} checks")
            for _, _, waiter in chunk:
                if not waiter.done():
                    waiter.set_exception(wrong)
            return
        for (_, _, waiter), outcome in zip(chunk, reply.outcomes, strict=True):
            if waiter.done():
                continue
            if outcome.HasField("response"):
                waiter.set_result(outcome.response)
            else:
                waiter.set_exception(_map_status(outcome.error))

    async def _send_one(
        self,
        request: provider_pb2.AttestRequest,
        deadline: float,
        waiter: asyncio.Future[provider_pb2.AttestResponse],
    ) -> None:
        try:
            reply = await self._attest_one(request, max(0.001, deadline - asyncio.get_running_loop().time()))
        except ProviderError as exc:
            if not waiter.done():
                waiter.set_exception(exc)
            return
        if not waiter.done():
            waiter.set_result(reply)

    async def collect(self, ticket: str, timeout: float) -> ProviderAnswer:
        try:
            reply = await self._stub.Collect(
                provider_pb2.CollectRequest(ticket=ticket), timeout=timeout, metadata=self._call_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise TicketUnknown("the provider no longer knows this ticket") from None
            raise _map_rpc_error(exc) from None
        return _answer(reply)

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await self._channel.close()


def _answer(reply: provider_pb2.AttestResponse) -> ProviderAnswer:
    if reply.result == provider_pb2.AttestResponse.RESULT_SUBJECT_NOT_FOUND:
        return ProviderAnswer(False, {}, reply.evidence)
    if reply.result == provider_pb2.AttestResponse.RESULT_PENDING:
        if not reply.ticket or not reply.HasField("ready_at"):
            raise ProviderError("provider answered PENDING without a ticket and a time")
        return ProviderAnswer(False, {}, "", reply.ready_at.ToDatetime(tzinfo=UTC), reply.ticket)
    if reply.result != provider_pb2.AttestResponse.RESULT_FOUND:
        raise ProviderError("provider answered without a result")
    return ProviderAnswer(True, {k: _plain(v) for k, v in reply.claims.fields.items()}, reply.evidence)


def _map_rpc_error(exc: grpc.aio.AioRpcError) -> ProviderError:
    return _map_code(exc.code(), exc.details() or "")


def _map_status(status: status_pb2.Status) -> ProviderError:
    """A refused check of an ``AttestBatch``, as the same refusal of an ``Attest`` would be."""
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    return _map_code(code, status.message)


def _map_code(code: grpc.StatusCode, message: str) -> ProviderError:
    detail = f"provider answered {code.name}: {message[:200]}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ProviderTimeout("provider did not answer within its deadline")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED):
        return ProviderUnavailable(detail, retryable=code == grpc.StatusCode.UNAVAILABLE)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return ProviderError(detail, provider_fault=False)
    return ProviderError(detail)


def _plain(value: struct_pb2.Value) -> Any:
    """A protobuf ``Value`` as a plain Python value (cheaper than ``json_format`` on the hot path)."""
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value  # JSON has one number type: a whole number is an int again
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "null_value" or kind is None:
        return None
    if kind == "struct_value":
        return {k: _plain(v) for k, v in value.struct_value.fields.items()}
    return [_plain(v) for v in value.list_value.values]
