"""A typed Python client for the onceonly Broker.

    tls = ClientTls.from_dir(Path("var/pki"), "housing-office")  # CA + the office's client certificate
    async with BrokerClient("127.0.0.1:50051", tls=tls) as broker:
        verification = await broker.verify(
            consumer=Consumer("L01280796", "Housing", "officer-17"),
            purpose=Purpose("HOUSING-RENT-SUBSIDY", "Rent subsidy application", "EXP-2026-0042"),
            legal_basis=LegalBasis.law("Ley 39/2015 art. 28"),
            subject=Subject.dni("35731890X"),   # a synthetic resident: `onceonly demo residents`
            checks=[Check("tax.compliance/v1")],
        )

The caller authenticates with a client certificate (mutual TLS, ``tls`` with ``cert`` and
``key``), or with a bearer token from its agency's identity provider (``token``, over TLS that
checks the broker's certificate: ``tls`` with the CA only), or — against a broker in
explicitly insecure local-development mode — names itself (``insecure_identity``).

Errors arrive as :class:`BrokerError` subclasses carrying the reason code, the fields or
rules named by the broker, and the trace id of a denied request.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import grpc
import jwt
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from onceonly.guard import (
    FORWARDED_CERT_HEADER,
    INSECURE_OFFICER_HEADER,
    INSECURE_ORG_HEADER,
    INSECURE_ROLE_HEADER,
)
from onceonly.pki import ClientTls
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from onceonly.wire import CHECK_STATUS, DOCUMENT_TYPE, LEGAL_BASIS_KIND

DEFAULT_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class Subject:
    document_type: str  # "DNI" | "NIE" | "PASSPORT"
    document_number: str

    @classmethod
    def dni(cls, number: str) -> Subject:
        return cls("DNI", number)

    @classmethod
    def nie(cls, number: str) -> Subject:
        return cls("NIE", number)

    @classmethod
    def parse(cls, text: str) -> Subject:
        """Parse ``TYPE:NUMBER``, e.g. ``DNI:12345678Z``."""
        doc_type, sep, number = text.partition(":")
        if not sep or not number:
            raise ValueError(f"subject must be TYPE:NUMBER (e.g. DNI:12345678Z), got {text!r}")
        return cls(doc_type.strip().upper(), number.strip())

    def __str__(self) -> str:
        return f"{self.document_type}:{self.document_number}"


@dataclass(frozen=True, slots=True)
class Consumer:
    organization_id: str
    unit: str
    officer_id: str
    officer_document: Subject | None = None


@dataclass(frozen=True, slots=True)
class Purpose:
    procedure_code: str
    purpose_text: str
    case_file_id: str


@dataclass(frozen=True, slots=True)
class LegalBasis:
    kind: str  # "LAW" | "CONSENT" | "NO_OBJECTION"
    reference: str

    @classmethod
    def law(cls, reference: str) -> LegalBasis:
        return cls("LAW", reference)

    @classmethod
    def consent(cls, reference: str) -> LegalBasis:
        return cls("CONSENT", reference)

    @classmethod
    def no_objection(cls, notice: str) -> LegalBasis:
        """The resident was told of the query (``notice`` identifies how) and did not object."""
        return cls("NO_OBJECTION", notice)


@dataclass(frozen=True, slots=True)
class Check:
    certificate_type_id: str
    parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Check:
        """Parse ``TYPE`` or ``TYPE:key=value,key=value``."""
        cid, _, rest = text.partition(":")
        params = {}
        for part in filter(None, rest.split(",")):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"check parameter must be key=value, got {part!r}")
            params[key.strip()] = value.strip()
        return cls(cid.strip(), params)


@dataclass(frozen=True, slots=True)
class Outcome:
    certificate_type_id: str
    provider_id: str
    status: str  # VERIFIED, SUBJECT_NOT_FOUND, UNAVAILABLE, TIMEOUT, ERROR
    claims: Mapping[str, Any]
    attestation: str
    detail: str
    latency_ms: int

    @property
    def verified(self) -> bool:
        return self.status == "VERIFIED"


@dataclass(frozen=True, slots=True)
class Verification:
    request_id: str
    trace_id: str
    outcomes: tuple[Outcome, ...]
    decided_at: datetime

    def outcome(self, certificate_type_id: str) -> Outcome:
        return next(o for o in self.outcomes if o.certificate_type_id == certificate_type_id)


class BrokerError(Exception):
    """The broker refused or failed a call; fields come from its rich error details."""

    def __init__(
        self,
        code: str,
        message: str,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[tuple[str, str]] = (),
        rule_violations: Sequence[tuple[str, str, str]] = (),
        quota_violations: Sequence[tuple[str, str]] = (),
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.field_violations = list(field_violations)
        self.rule_violations = list(rule_violations)
        self.quota_violations = list(quota_violations)
        """(subject, description) of each quota used up (``QuotaFailure``)."""
        self.retry_after_s = retry_after_s
        """When to try again (``RetryInfo``), if the broker said."""

    @property
    def trace_id(self) -> str:
        return self.metadata.get("trace_id", "")


class Denied(BrokerError):
    """PERMISSION_DENIED: policy refused; ``reason`` is the DenialReason name."""


class InvalidArgument(BrokerError):
    """INVALID_ARGUMENT: ``field_violations`` name each bad field."""


class NotFound(BrokerError):
    """NOT_FOUND: e.g. an unknown certificate type."""


class AlreadyExists(BrokerError):
    """ALREADY_EXISTS: the request id was used with a different body."""


class Unavailable(BrokerError):
    """UNAVAILABLE or DEADLINE_EXCEEDED: retry later with the same request id."""


class Unauthenticated(BrokerError):
    """UNAUTHENTICATED: no, or no valid, credentials (``reason`` says which: TOKEN_EXPIRED…)."""


class Exhausted(BrokerError):
    """RESOURCE_EXHAUSTED: a quota or a capacity is used up. ``reason`` QUOTA_EXCEEDED: the consumer
    made the requests its master agreement allows (``quota_violations`` names the agreement; retry
    after ``retry_after_s`` with a new request id); otherwise the broker is overloaded."""


_ERRORS: dict[grpc.StatusCode, type[BrokerError]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Denied,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Exhausted,
}


def broker_error(exc: grpc.aio.AioRpcError) -> BrokerError:
    """Turn a gRPC error into a :class:`BrokerError`, unpacking its rich details."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    if status is None:
        cls = _ERRORS.get(exc.code(), BrokerError)
        return cls(exc.code().name, exc.details() or exc.code().name)
    return _error_from_status(status)


@dataclass(frozen=True, slots=True)
class BulkItem:
    """The answer for one subject of a bulk verification: a verification or an error."""

    request_id: str
    verification: Verification | None
    error: BrokerError | None


@dataclass(frozen=True, slots=True)
class VerificationJob:
    """An asynchronous verification: its state and, once ``DONE``, one item per subject."""

    job_id: str
    submission_id: str
    state: str  # PENDING, IN_PROGRESS, DONE, EXPIRED
    subjects: int
    decided: int
    submitted_at: datetime
    estimated_done_at: datetime | None
    expires_at: datetime
    done_at: datetime | None
    results: tuple[BulkItem, ...]

    @property
    def done(self) -> bool:
        return self.state == "DONE"


def _job(reply: broker_pb2.VerificationJob) -> VerificationJob:
    def when(ts: Any) -> datetime | None:
        return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None

    return VerificationJob(
        reply.job_id,
        reply.submission_id,
        broker_pb2.JobState.Name(reply.state).removeprefix("JOB_STATE_"),
        reply.subjects,
        reply.decided,
        reply.submitted_at.ToDatetime(tzinfo=UTC),
        when(reply.estimated_done_at),
        reply.expires_at.ToDatetime(tzinfo=UTC),
        when(reply.done_at),
        tuple(
            BulkItem(r.request_id, _verification(r.response), None)
            if r.WhichOneof("result") == "response"
            else BulkItem(r.request_id, None, _error_from_status(r.error))
            for r in reply.results
        ),
    )


def _error_from_status(status: Any) -> BrokerError:
    """A :class:`BrokerError` from a ``google.rpc.Status`` carried inside a message."""
    code = grpc.StatusCode.UNKNOWN
    for candidate in grpc.StatusCode:
        if candidate.value[0] == status.code:
            code = candidate
    reason, metadata = "", {}
    fields: list[tuple[str, str]] = []
    rules: list[tuple[str, str, str]] = []
    quotas: list[tuple[str, str]] = []
    retry_after_s = None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [(v.field, v.description) for v in bad.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            failure = error_details_pb2.PreconditionFailure()
            detail.Unpack(failure)
            rules = [(v.type, v.subject, v.description) for v in failure.violations]
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            quota = error_details_pb2.QuotaFailure()
            detail.Unpack(quota)
            quotas = [(v.subject, v.description) for v in quota.violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after_s = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    cls = _ERRORS.get(code, BrokerError)
    return cls(code.name, status.message or code.name, reason, metadata, fields, rules, quotas, retry_after_s)


def _verification(reply: broker_pb2.VerifyResponse) -> Verification:
    return Verification(
        reply.request_id,
        reply.trace_id,
        tuple(
            Outcome(
                o.certificate_type_id,
                o.provider_id,
                CHECK_STATUS.name(o.status),
                _whole_numbers(json_format.MessageToDict(o.claims)) if o.HasField("claims") else {},
                o.attestation,
                o.detail,
                o.latency_ms,
            )
            for o in reply.outcomes
        ),
        reply.decided_at.ToDatetime(tzinfo=UTC),
    )


def _whole_numbers(value: Any) -> Any:
    """Claims as the attestation signs them: a protobuf ``Struct`` carries every number as a double,
    so ``2025`` arrives as ``2025.0``; whole numbers are ints again."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def _subject(subject: Subject) -> common_pb2.Subject:
    return common_pb2.Subject(
        document_type=DOCUMENT_TYPE.number(subject.document_type),
        document_number=subject.document_number,
    )


@dataclass(frozen=True, slots=True)
class InsecureIdentity:
    """Who the caller says it is to a broker in insecure (local development) mode."""

    organization_id: str
    officer_id: str | None = None
    role: str = "consumer"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        items = [(INSECURE_ORG_HEADER, self.organization_id), (INSECURE_ROLE_HEADER, self.role)]
        if self.officer_id:
            items.append((INSECURE_OFFICER_HEADER, self.officer_id))
        return tuple(items)


class BrokerClient:
    """Async client of the Broker service over one reused channel.

    Credentials are explicit: ``tls`` (mutual TLS when it holds a client certificate),
    ``token`` (a bearer JWT, sent on every call; needs ``tls``, at least with the CA), or
    ``insecure_identity`` (plaintext, for a broker in insecure mode on loopback).
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float = 10.0,
        tls: ClientTls | None = None,
        token: str | None = None,
        insecure_identity: InsecureIdentity | None = None,
    ):
        self.target = target
        self.timeout = timeout
        if tls is not None and insecure_identity is not None:
            raise ValueError("choose TLS credentials or an insecure identity, not both")
        if token is not None and tls is None:
            raise ValueError("a bearer token is only sent over TLS: give tls=ClientTls(ca) as well")
        if tls is None and insecure_identity is None:
            raise ValueError(
                "BrokerClient needs credentials: tls=ClientTls(...) (mutual TLS), a token with tls, "
                "or insecure_identity=InsecureIdentity(...) for a broker in insecure mode"
            )
        metadata: list[tuple[str, str]] = []
        if tls is not None:
            self._channel = grpc.aio.secure_channel(target, tls.channel_credentials())
        else:
            assert insecure_identity is not None
            self._channel = grpc.aio.insecure_channel(target)
            metadata += insecure_identity.metadata()
        if token is not None:
            metadata.append(("authorization", f"Bearer {token}"))
        self._metadata = tuple(metadata) or None
        self._stub = broker_pb2_grpc.BrokerStub(self._channel)
        self._owns_channel = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    def acting_for(self, *, certificate_der: bytes | None = None, token: str | None = None) -> Self:
        """This client (its channel, which stays its own) calling on behalf of a person: the client
        certificate they presented to a console, or their bearer token. Only a console's certificate
        (``OU=console``) may do this; the broker checks the person's credential itself. Closing the
        returned client does not close the channel."""
        if (certificate_der is None) == (token is None):
            raise ValueError("act for a person by their certificate or their token (one of them)")
        relay = copy.copy(self)
        relay._owns_channel = False
        relay._metadata = (
            (("authorization", f"Bearer {token}"),)
            if token is not None
            else ((FORWARDED_CERT_HEADER, base64.b64encode(certificate_der or b"").decode()),)
        )
        return relay

    async def verify(
        self,
        *,
        consumer: Consumer,
        purpose: Purpose,
        legal_basis: LegalBasis,
        subject: Subject,
        checks: Sequence[Check],
        request_id: str | None = None,
    ) -> Verification:
        """Verify ``checks`` about ``subject``. Retrying with the same ``request_id`` is safe."""
        request = broker_pb2.VerifyRequest(
            request_id=request_id or uuid.uuid4().hex,
            consumer=self._consumer(consumer),
            purpose=self._purpose(purpose),
            legal_basis=self._basis(legal_basis),
            subject=_subject(subject),
            checks=[
                broker_pb2.Check(certificate_type_id=c.certificate_type_id, parameters=c.parameters)
                for c in checks
            ],
        )
        try:
            reply = await self._stub.Verify(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return _verification(reply)

    async def verify_bulk(
        self,
        *,
        consumer: Consumer,
        purpose: Purpose,
        legal_basis: LegalBasis,
        checks: Sequence[Check],
        subjects: Iterable[tuple[str, Subject]],
        window: int = 64,
        timeout: float | None = None,
    ) -> AsyncIterator[BulkItem]:
        """Verify ``checks`` for every ``(request_id, subject)``; yield one item per subject as decided.

        Subjects are sent as the broker asks for them (gRPC flow control), so ``subjects`` may be a
        lazy iterator over a large file. Re-sending the same request ids after a failure is safe.
        """
        header = self._header(consumer, purpose, legal_basis, checks, window)

        async def requests() -> AsyncIterator[broker_pb2.BulkVerifyRequest]:
            yield broker_pb2.BulkVerifyRequest(header=header)
            for request_id, subject in subjects:
                yield broker_pb2.BulkVerifyRequest(
                    subject=broker_pb2.BulkSubject(request_id=request_id, subject=_subject(subject))
                )
                await asyncio.sleep(0)  # let replies flow while a long input is being read

        call = self._stub.VerifyBulk(requests(), timeout=timeout, metadata=self._metadata)
        try:
            async for result in call:
                if result.WhichOneof("result") == "response":
                    yield BulkItem(result.request_id, _verification(result.response), None)
                else:
                    yield BulkItem(result.request_id, None, _error_from_status(result.error))
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None

    async def submit_verification(
        self,
        *,
        consumer: Consumer,
        purpose: Purpose,
        legal_basis: LegalBasis,
        checks: Sequence[Check],
        subjects: Sequence[tuple[str, Subject]],
        submission_id: str | None = None,
        window: int = 0,
    ) -> VerificationJob:
        """Submit up to 1,000 ``(request_id, subject)`` to be decided in the background; the job
        is answered at once (``PENDING``). Submitting the same ``submission_id`` again is safe."""
        request = broker_pb2.SubmitVerificationRequest(
            submission_id=submission_id or uuid.uuid4().hex,
            header=self._header(consumer, purpose, legal_basis, checks, window),
            subjects=[broker_pb2.BulkSubject(request_id=rid, subject=_subject(s)) for rid, s in subjects],
        )
        try:
            reply = await self._stub.SubmitVerification(
                request, timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return _job(reply)

    async def verification_result(self, job_id: str) -> VerificationJob:
        """A job's state, with every subject's result once it is ``DONE``."""
        try:
            reply = await self._stub.GetVerificationResult(
                broker_pb2.GetVerificationResultRequest(job_id=job_id),
                timeout=self.timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return _job(reply)

    @classmethod
    def _header(
        cls,
        consumer: Consumer,
        purpose: Purpose,
        legal_basis: LegalBasis,
        checks: Sequence[Check],
        window: int,
    ) -> broker_pb2.BulkHeader:
        """What every subject of a bulk or asynchronous verification shares."""
        return broker_pb2.BulkHeader(
            consumer=cls._consumer(consumer),
            purpose=cls._purpose(purpose),
            legal_basis=cls._basis(legal_basis),
            checks=[
                broker_pb2.Check(certificate_type_id=c.certificate_type_id, parameters=c.parameters)
                for c in checks
            ],
            window=window,
        )

    @staticmethod
    def _consumer(consumer: Consumer) -> common_pb2.Consumer:
        return common_pb2.Consumer(
            organization_id=consumer.organization_id,
            unit=consumer.unit,
            officer_id=consumer.officer_id,
            officer_document=_subject(consumer.officer_document) if consumer.officer_document else None,
        )

    @staticmethod
    def _purpose(purpose: Purpose) -> common_pb2.Purpose:
        return common_pb2.Purpose(
            procedure_code=purpose.procedure_code,
            purpose_text=purpose.purpose_text,
            case_file_id=purpose.case_file_id,
        )

    @staticmethod
    def _basis(legal_basis: LegalBasis) -> common_pb2.LegalBasis:
        return common_pb2.LegalBasis(
            kind=LEGAL_BASIS_KIND.number(legal_basis.kind),
            reference=legal_basis.reference,
        )

    async def catalog(self, *, allowed_only: bool = False) -> broker_pb2.Catalog:
        """The broker's catalog of certificate types and providers, each type with what the
        caller's agreements in force allow (``allowed``); ``allowed_only``: only those types."""
        try:
            return await self._stub.GetCatalog(
                broker_pb2.GetCatalogRequest(allowed_only=allowed_only),
                timeout=self.timeout,
                metadata=self._metadata,
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None

    async def jwks(self) -> dict[str, Any]:
        """The broker's public keys (RFC 7517 JWKS)."""
        try:
            reply = await self._stub.GetJwks(
                broker_pb2.GetJwksRequest(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise broker_error(exc) from None
        return dict(json.loads(reply.json))


def verify_attestation(token: str, jwks: Mapping[str, Any], *, audience: str) -> dict[str, Any]:
    """Check an attestation offline against a JWKS; return its payload or raise ``jwt.InvalidTokenError``."""
    kid = jwt.get_unverified_header(token).get("kid")
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(dict(jwks)).keys}
    if kid not in keys:
        raise jwt.InvalidTokenError(f"no key {kid!r} in the JWKS")
    return dict(jwt.decode(token, keys[kid], algorithms=["EdDSA"], audience=audience))
