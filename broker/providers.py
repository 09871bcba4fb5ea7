"""The broker's side of the provider contract: a port and its gRPC implementation.

The core calls :class:`ProviderClient` and knows nothing of gRPC; one
:class:`GrpcProviderClient` per provider keeps one channel open for the broker's life.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import struct_pb2

from onceonly import telemetry
from onceonly.broker.domain import LegalBasisKind, SubjectId
from onceonly.fields import FieldSpec, FieldType
from onceonly.guard import INSECURE_ROLE_HEADER
from onceonly.pki import ClientTls
from onceonly.serving import MAX_MESSAGE_BYTES
from onceonly.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from onceonly.wire import DOCUMENT_TYPE, LEGAL_BASIS_KIND, PARAMETER_TYPE


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

    def __init__(self, provider_id: str, target: str, *, tls: ClientTls | None = None):
        self.provider_id = provider_id
        self.target = target
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
        try:
            reply = await self._stub.Attest(request, timeout=timeout, metadata=self._call_metadata())
        except grpc.aio.AioRpcError as exc:
            raise _map_rpc_error(exc) from None
        return _answer(reply)

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
    code = exc.code()
    detail = f"provider answered {code.name}: {(exc.details() or '')[:200]}"
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
