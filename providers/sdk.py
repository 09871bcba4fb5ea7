"""The provider adapter SDK: what a provider agency implements to answer the broker.

An agency exposes its own system (a modern API, a database, a legacy mainframe behind a
batch interface…) to the broker by writing one :class:`ProviderAdapter`. The adapter says
which certificate types it serves, with the parameters it accepts and the claims it
returns, and answers one check about one subject at a time. The SDK does the rest: the
gRPC ``Provider`` service, parameter parsing, claim checking, error mapping, health,
reflection and graceful stop.

Example — an adapter over a (hypothetical) legacy licence register::

    from onceonly.providers.sdk import (
        AttestQuery, CertificateTypeSupport, ProviderAdapter, SubjectNotFound, serve_provider,
    )
    from onceonly.fields import FieldSpec, FieldType

    class DrivingLicences(ProviderAdapter):
        provider_id = "traffic"
        name = "Traffic Directorate"

        def __init__(self, legacy_client):
            self._legacy = legacy_client

        def certificate_types(self):
            return (
                CertificateTypeSupport(
                    "traffic.licence-valid/v1",
                    parameters=(),
                    claims=(FieldSpec("valid", FieldType.BOOLEAN),),
                ),
            )

        async def attest(self, query: AttestQuery):
            record = await self._legacy.lookup(query.document_number)
            if record is None:
                raise SubjectNotFound(query.document_number)
            return {"valid": record.status == "VIGENTE"}

    tls = TlsConfig.from_dir(Path("var/pki"), "traffic")  # onceonly pki issue --role provider --server ...
    asyncio.run(serve_provider(DrivingLicences(client), "0.0.0.0:50061", tls=tls))

Only the broker may call an adapter: the server speaks mutual TLS and answers only a caller
whose client certificate (from the platform CA) carries the role ``broker``; anyone else gets
``PERMISSION_DENIED`` (another role) or ``UNAUTHENTICATED``. ``insecure=True`` serves plaintext
on loopback only, for local development.

Answer with the least data that settles the question (a boolean, not the figure behind
it): the broker signs exactly what the adapter returns, and it may not return anything
the certificate type does not declare.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import contextvars
import datetime
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2

from onceonly import metrics, telemetry
from onceonly.errors import (
    FieldViolation,
    Internal,
    InvalidArgument,
    NotFound,
    OnceOnlyError,
    permission_denied,
    unauthenticated,
)
from onceonly.evidence import EvidenceSigner, evidence_claims
from onceonly.fields import FieldSpec, normalise_claims, parse_parameter
from onceonly.grpc_types import Context
from onceonly.guard import (
    INSECURE_ROLE_HEADER,
    GuardInterceptor,
    metadata_value,
    peer_certificate,
)
from onceonly.pki import CertIdentity, RevocationList, TlsConfig, certificate_identity
from onceonly.serving import RunningServer, require_loopback, run_until_signal, start_server
from onceonly.status import abort, status_for
from onceonly.v1 import common_pb2, provider_pb2, provider_pb2_grpc
from onceonly.validation import validate_subject
from onceonly.wire import LEGAL_BASIS_KIND, PARAMETER_TYPE

log = logging.getLogger(__name__)

SERVICE_NAME: str = provider_pb2.DESCRIPTOR.services_by_name["Provider"].full_name
"""The fully qualified gRPC service name, ``onceonly.v1.Provider``."""
HEALTH_CHECK_S = 5.0
MAX_BATCH = 256
"""The most checks one ``AttestBatch`` call may carry."""
MAX_PENDING = 100_000
"""Deferred checks a provider remembers at once; beyond, the oldest is forgotten (asked again, it is
asked anew)."""
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class CertificateTypeSupport:
    """One certificate type an adapter serves, declared as in the broker's catalog."""

    certificate_type_id: str
    parameters: tuple[FieldSpec, ...]
    claims: tuple[FieldSpec, ...]


@dataclass(frozen=True)
class AttestQuery:
    """One check about one subject, as the adapter receives it.

    ``document_number`` is normalised and validated (check letter included);
    ``parameters`` are parsed to Python values (``int``, ``bool``, ``str``, ISO date ``str``)
    according to the declared specs, so adapters never parse text themselves. Optional
    parameters that were not sent are absent from the mapping. ``legal_basis_kind`` is
    ``"LAW"``, ``"CONSENT"`` or ``"UNSPECIFIED"``; the remaining fields let the agency keep
    its own access log.
    """

    request_id: str
    trace_id: str
    certificate_type_id: str
    document_type: str
    document_number: str
    parameters: Mapping[str, Any]
    consumer_organization_id: str
    procedure_code: str
    legal_basis_kind: str


class Deferred(Exception):
    """Raised by :meth:`ProviderAdapter.attest` (or ``collect``) when the agency answers later.

    The broker is told to come back from ``ready_at`` with a ticket (``ticket``, or one the SDK
    makes up); then :meth:`ProviderAdapter.collect` is asked for the answer, and may defer again.
    """

    def __init__(self, ready_at: datetime.datetime, ticket: str = "") -> None:
        if ready_at.tzinfo is None:
            raise ValueError("ready_at must be timezone-aware")
        super().__init__(f"ready at {ready_at.isoformat()}")
        self.ready_at = ready_at
        self.ticket = ticket


class SubjectNotFound(Exception):
    """Raised by :meth:`ProviderAdapter.attest` when the agency has no record of the subject."""


class InvalidQuery(ValueError):
    """Raised by an adapter when a well-typed parameter is still not acceptable.

    For example a fiscal year the agency holds no data for. The broker receives
    ``INVALID_ARGUMENT`` naming ``field``.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ProviderAdapter(abc.ABC):
    """What a provider agency implements over its own system.

    Subclasses set ``provider_id`` (the id the broker's catalog knows the agency by) and
    ``name`` as class attributes (or properties), list what they serve in
    :meth:`certificate_types`, and answer in :meth:`attest`.

    ``attest`` is a coroutine: adapters over blocking systems (a database driver, a SOAP
    client) should wrap the blocking call in ``asyncio.to_thread`` so one slow lookup does
    not stall every other request the server is handling.
    """

    provider_id: str
    name: str

    @abc.abstractmethod
    def certificate_types(self) -> Sequence[CertificateTypeSupport]:
        """The certificate types served, with parameters and claims exactly as in the catalog."""

    async def health(self) -> str | None:
        """Why the agency's system cannot answer now, or ``None`` when it can.

        Called every few seconds (``ONCEONLY_HEALTH_CHECK_S``, default 5); while it returns a
        reason (or raises, or takes longer than the interval) the provider's health service reports
        ``NOT_SERVING``, so the broker's operators and load balancers see the agency's system down
        rather than the provider process. Override it to probe what :meth:`attest` depends on (a
        database, a legacy service); by default the adapter is always ready.
        """
        return None

    async def collect(self, query: AttestQuery, ticket: str) -> Mapping[str, Any]:
        """The answer to a check :meth:`attest` deferred (raised :class:`Deferred` for), asked
        with its ticket once its ``ready_at`` has passed. Raise :class:`Deferred` again if it
        is still not ready. By default: ask :meth:`attest` again."""
        return await self.attest(query)

    @abc.abstractmethod
    async def attest(self, query: AttestQuery) -> Mapping[str, Any]:
        """Answer one check: return the declared claims, or raise :class:`SubjectNotFound`.

        Raise :class:`InvalidQuery` for a parameter value the agency cannot answer for.
        Any other exception is reported to the broker as an internal error and logged here;
        its text never leaves the provider.
        """


def _bad(field: str, description: str, message: str) -> InvalidArgument:
    """A refusal of one field, worded as the broker reports it to the caseworker."""
    return InvalidArgument([FieldViolation(field, description)], message=message)


def field_spec_to_proto(spec: FieldSpec) -> common_pb2.FieldSpec:
    """The wire form of a :class:`~onceonly.fields.FieldSpec`."""
    return common_pb2.FieldSpec(
        name=spec.name,
        type=PARAMETER_TYPE.to_proto(spec.type),
        required=spec.required,
        description=spec.description,
    )


class ProviderServicer(provider_pb2_grpc.ProviderServicer):
    """The gRPC ``Provider`` service around one :class:`ProviderAdapter`."""

    def __init__(self, adapter: ProviderAdapter, evidence: EvidenceSigner | None = None) -> None:
        if not getattr(adapter, "provider_id", "") or not getattr(adapter, "name", ""):
            raise ValueError("a provider adapter needs a non-empty provider_id and name")
        self._adapter = adapter
        self._evidence = evidence
        supported: dict[str, CertificateTypeSupport] = {}
        for support in adapter.certificate_types():
            if support.certificate_type_id in supported:
                raise ValueError(f"certificate type {support.certificate_type_id!r} declared twice")
            supported[support.certificate_type_id] = support
        # Declarations are fixed at start-up: the broker cross-checks them against the catalog.
        self._supported = supported
        # Checks the adapter deferred, by ticket: the question, to sign the answer over it later.
        self._pending: dict[str, tuple[provider_pb2.AttestRequest, AttestQuery, CertificateTypeSupport]] = {}
        self._description = provider_pb2.ProviderDescription(
            provider_id=adapter.provider_id,
            name=adapter.name,
            evidence_certificate=evidence.certificate_b64 if evidence is not None else "",
            certificate_types=[
                provider_pb2.SupportedCertificateType(
                    certificate_type_id=s.certificate_type_id,
                    parameters=[field_spec_to_proto(p) for p in s.parameters],
                    claims=[field_spec_to_proto(c) for c in s.claims],
                )
                for s in supported.values()
            ],
        )

    async def Describe(
        self, request: provider_pb2.DescribeRequest, context: Context
    ) -> provider_pb2.ProviderDescription:
        """What this provider serves."""
        return self._description

    async def Attest(
        self, request: provider_pb2.AttestRequest, context: Context
    ) -> provider_pb2.AttestResponse:
        """Answer one check, mapping adapter outcomes to results and status codes."""
        return await self._serve(
            context, self._traced_attest(request, context.invocation_metadata()), "attest", request.request_id
        )

    async def Collect(
        self, request: provider_pb2.CollectRequest, context: Context
    ) -> provider_pb2.AttestResponse:
        """The answer to a check that was pending, if it is ready."""
        return await self._serve(context, self._collect(request), "collect")

    async def AttestBatch(
        self, request: provider_pb2.AttestBatchRequest, context: Context
    ) -> provider_pb2.AttestBatchResponse:
        """Answer several checks at once, each as ``Attest`` would: its response, or its refusal."""
        if len(request.checks) > MAX_BATCH:
            await abort(
                context,
                _bad(
                    "checks",
                    f"at most {MAX_BATCH} checks per call",
                    f"checks: at most {MAX_BATCH} per call, not {len(request.checks)}",
                ),
            )
        outcomes = await asyncio.gather(*(self._outcome(check) for check in request.checks))
        return provider_pb2.AttestBatchResponse(outcomes=outcomes)

    async def _outcome(self, request: provider_pb2.AttestRequest) -> provider_pb2.AttestOutcome:
        try:
            answered = await self._traced_attest(request, tuple(request.trace_context.items()))
            return provider_pb2.AttestOutcome(response=answered)
        except OnceOnlyError as refusal:
            error: OnceOnlyError = refusal
        except Exception:
            log.exception("attest failed", extra={"request_id": request.request_id})
            error = Internal("adapter failed")
        return provider_pb2.AttestOutcome(error=status_for(error))

    async def _serve(
        self,
        context: Context,
        answering: Awaitable[provider_pb2.AttestResponse],
        what: str,
        request_id: str = "",
    ) -> provider_pb2.AttestResponse:
        """``answering``'s response; a failure leaves as its status, with nothing internal in it."""
        try:
            return await answering
        except OnceOnlyError as refusal:
            error: OnceOnlyError = refusal
        except Exception:
            # A bug in the SDK path itself: same rule, log it here, send nothing revealing.
            log.exception("%s failed", what, extra={"request_id": request_id})
            error = Internal("adapter failed")
        # Aborting raises inside grpc; doing it here keeps it out of the handlers above.
        await abort(context, error)

    async def _traced_attest(
        self, request: provider_pb2.AttestRequest, metadata: Any
    ) -> provider_pb2.AttestResponse:
        # Continue the broker's trace (W3C trace context in the call's metadata, or in the check
        # itself within a batch), if tracing is on.
        with (
            telemetry.extracted(metadata),
            telemetry.span(
                "onceonly.provider.serve",
                lambda: {
                    "onceonly.provider": self._adapter.provider_id,
                    "onceonly.certificate_type": request.certificate_type_id,
                    "onceonly.procedure_code": request.procedure_code,
                    "onceonly.consumer": request.consumer_organization_id,
                },
                kind=telemetry.trace.SpanKind.SERVER,
            ),
        ):
            return await self._attest(request)

    async def _attest(self, request: provider_pb2.AttestRequest) -> provider_pb2.AttestResponse:
        support = self._supported.get(request.certificate_type_id)
        if support is None:
            raise NotFound(
                f"certificate type {request.certificate_type_id!r} is not served by "
                f"provider {self._adapter.provider_id!r}",
                resource_type="onceonly.v1.CertificateType",
                resource_name=request.certificate_type_id,
                field="certificate_type_id",
                description="not served by this provider",
                reason="CERTIFICATE_TYPE_NOT_SERVED",
            )
        query = self._query(request, support)
        return await self._answer(request, query, support, self._adapter.attest(query))

    async def _collect(self, request: provider_pb2.CollectRequest) -> provider_pb2.AttestResponse:
        waiting = self._pending.pop(request.ticket, None)
        if waiting is None:
            raise NotFound(
                "no check is pending under this ticket: ask Attest again",
                resource_type="onceonly.v1.CollectRequest",
                resource_name=request.ticket[:64],
                field="ticket",
                description="unknown, or answered already",
                reason="TICKET_NOT_FOUND",
            )
        asked, query, support = waiting
        return await self._answer(asked, query, support, self._adapter.collect(query, request.ticket))

    async def _answer(
        self,
        request: provider_pb2.AttestRequest,
        query: AttestQuery,
        support: CertificateTypeSupport,
        asked: Awaitable[Mapping[str, Any]],
    ) -> provider_pb2.AttestResponse:
        """The response to ``request`` once the adapter's ``asked`` completes (or defers)."""
        context_fields = {
            "provider_id": self._adapter.provider_id,
            "certificate_type_id": support.certificate_type_id,
            "request_id": request.request_id,
            "trace_id": request.trace_id,
        }
        try:
            claims = await asked
        except Deferred as later:
            ticket = later.ticket or uuid.uuid4().hex
            if len(self._pending) >= MAX_PENDING:  # forget the oldest: asked again, it is asked anew
                self._pending.pop(next(iter(self._pending)))
            self._pending[ticket] = (request, query, support)
            pending = provider_pb2.AttestResponse(
                result=provider_pb2.AttestResponse.RESULT_PENDING, ticket=ticket
            )
            pending.ready_at.FromDatetime(later.ready_at)
            return pending
        except SubjectNotFound:
            return provider_pb2.AttestResponse(
                result=provider_pb2.AttestResponse.RESULT_SUBJECT_NOT_FOUND,
                evidence=self._sign(request, query, False, {}),
            )
        except InvalidQuery as exc:
            raise _bad(
                f"parameters.{exc.field}", exc.message, f"parameter {exc.field}: {exc.message}"
            ) from None
        except Exception:
            # The exception may carry internal detail (hosts, SQL, personal data): log it here,
            # send only a generic message.
            log.exception("adapter failed", extra=context_fields)
            raise Internal("adapter failed") from None
        try:
            if not isinstance(claims, Mapping):
                raise ValueError(f"claims must be a mapping, got {type(claims).__name__}")
            checked = normalise_claims(support.claims, claims)
        except ValueError as exc:
            log.error("adapter returned invalid claims: %s", exc, extra=context_fields)
            raise Internal(f"adapter returned invalid claims: {exc}") from None
        struct = struct_pb2.Struct()
        struct.update(checked)
        return provider_pb2.AttestResponse(
            result=provider_pb2.AttestResponse.RESULT_FOUND,
            claims=struct,
            evidence=self._sign(request, query, True, checked),
        )

    def _sign(
        self, request: provider_pb2.AttestRequest, query: AttestQuery, found: bool, claims: Mapping[str, Any]
    ) -> str:
        """This provider's signature over the question and its answer (empty in insecure mode)."""
        if self._evidence is None:
            return ""
        return self._evidence.sign(
            evidence_claims(
                request_id=request.request_id,
                trace_id=request.trace_id,
                certificate_type_id=request.certificate_type_id,
                subject=f"{query.document_type}:{query.document_number}",
                parameters=dict(request.parameters),
                found=found,
                claims=claims,
            )
        )

    def _query(self, request: provider_pb2.AttestRequest, support: CertificateTypeSupport) -> AttestQuery:
        subject = validate_subject("subject", request.subject)
        return AttestQuery(
            request_id=request.request_id,
            trace_id=request.trace_id,
            certificate_type_id=request.certificate_type_id,
            document_type=subject.document_type.value,
            document_number=subject.document_number,
            parameters=parse_parameters(support.parameters, request.parameters),
            consumer_organization_id=request.consumer_organization_id,
            procedure_code=request.procedure_code,
            legal_basis_kind=LEGAL_BASIS_KIND.name(request.legal_basis_kind) or "UNSPECIFIED",
        )


def parse_parameters(specs: tuple[FieldSpec, ...], given: Mapping[str, str]) -> dict[str, Any]:
    """Parse wire parameters against their specs; refuse unknown, missing or ill-typed ones."""
    declared = {s.name: s for s in specs}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise _bad(
            f"parameters.{unknown[0]}",
            "not a parameter of this type",
            f"parameter {unknown[0]}: not a parameter of this type",
        )
    parsed: dict[str, Any] = {}
    for spec in specs:
        if spec.name not in given:
            if spec.required:
                raise _bad(f"parameters.{spec.name}", "required", f"parameter {spec.name}: required")
            continue
        try:
            parsed[spec.name] = parse_parameter(spec, given[spec.name])
        except ValueError as exc:
            raise _bad(f"parameters.{spec.name}", str(exc), f"parameter {spec.name}: {exc}") from None
    return parsed


_caller: contextvars.ContextVar[CertIdentity | None] = contextvars.ContextVar(
    "onceonly_provider_caller", default=None
)
_INSECURE_BROKER = CertIdentity("", "broker", "insecure")


def _broker_only(
    insecure: bool, revocations: RevocationList | None = None
) -> Callable[[Context, str], CertIdentity]:
    """Authenticate a call to a provider: the broker, and only the broker (with a certificate the
    platform CA has not revoked)."""

    def authenticate(context: Context, method: str) -> CertIdentity:
        pem = peer_certificate(context)
        if pem is not None:
            identity = certificate_identity(pem, revocations)
            if identity.role != "broker":
                raise permission_denied(
                    "CALLER_NOT_BROKER",
                    f"rule CALLER_NOT_BROKER: only the broker may call a provider, not a {identity.role}",
                )
            return identity
        if insecure:
            if metadata_value(context, INSECURE_ROLE_HEADER) == "broker":
                return _INSECURE_BROKER
            raise permission_denied("CALLER_NOT_BROKER", "rule CALLER_NOT_BROKER: only the broker may call")
        raise unauthenticated("UNAUTHENTICATED", "only the broker, with its client certificate, may call")

    return authenticate


async def report_adapter_health(running: RunningServer, adapter: ProviderAdapter, every_s: float) -> None:
    """Set the server's health from :meth:`ProviderAdapter.health`, every ``every_s``, until cancelled."""
    last: str | None = None
    while True:
        try:
            problem = await asyncio.wait_for(adapter.health(), timeout=max(every_s, 1.0))
        except TimeoutError:
            problem = "the agency's system did not answer the health check in time"
        except Exception as exc:  # a failing check is itself a reason not to serve
            problem = f"the health check failed: {type(exc).__name__}"
        status = SERVING if problem is None else NOT_SERVING
        for name in ("", *running.service_names):
            await running.health.set(name, status)
        if problem != last:
            if problem is not None:
                log.warning("not serving", extra={"provider_id": adapter.provider_id, "problem": problem})
            elif last is not None:
                log.info("serving again", extra={"provider_id": adapter.provider_id})
            last = problem
        await asyncio.sleep(every_s)


async def start_provider(
    adapter: ProviderAdapter,
    bind: str = "127.0.0.1:0",
    *,
    tls: TlsConfig | None = None,
    insecure: bool = False,
    health_check_s: float = HEALTH_CHECK_S,
) -> RunningServer:
    """Start a provider server for ``adapter`` on ``bind`` (port 0 picks a free port).

    ``tls`` is the provider's server certificate and the platform CA; only the broker's client
    certificate is answered. ``insecure=True`` (and no ``tls``) serves plaintext on loopback
    only; one of the two must be given. Health follows :meth:`ProviderAdapter.health`, asked
    every ``health_check_s``.
    """
    if health_check_s <= 0:
        raise ValueError("health_check_s must be positive")
    if tls is None and not insecure:
        raise ValueError(
            "a provider needs tls=TlsConfig(...) (run `onceonly pki init`) or, "
            "for local development on loopback, insecure=True"
        )
    if tls is not None and insecure:
        raise ValueError("tls and insecure are exclusive")
    if insecure:
        require_loopback(bind, f"provider {adapter.provider_id!r} in insecure mode")
        log.warning("INSECURE MODE: plaintext, for local development only", extra={"listen": bind})
    if tls is not None:
        tls.check()  # a missing certificate or key is named, with the command that makes it
    servicer = ProviderServicer(adapter, EvidenceSigner.from_tls(tls) if tls is not None else None)
    running = await start_server(
        bind,
        [lambda server: provider_pb2_grpc.add_ProviderServicer_to_server(servicer, server)],
        [SERVICE_NAME],
        tls=tls,
        interceptors=[
            GuardInterceptor(
                _broker_only(insecure, RevocationList.beside(tls.ca) if tls is not None else None), _caller
            )
        ],
    )
    reporter = asyncio.create_task(report_adapter_health(running, adapter, health_check_s))

    async def stop_reporting() -> None:
        reporter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reporter

    running.on_stop.insert(0, stop_reporting)
    log.info(
        "provider serving",
        extra={
            "provider_id": adapter.provider_id,
            "target": running.target,
            "security": "insecure" if insecure else "mtls",
        },
    )
    return running


async def serve_provider(
    adapter: ProviderAdapter, bind: str, *, tls: TlsConfig | None = None, insecure: bool = False
) -> None:
    """Serve ``adapter`` on ``bind`` until SIGTERM or SIGINT, then stop gracefully."""
    telemetry.configure_tracing(f"onceonly-provider-{adapter.provider_id}")
    metrics.configure_metrics(f"onceonly-provider-{adapter.provider_id}")
    every_s = float(os.environ.get("ONCEONLY_HEALTH_CHECK_S") or HEALTH_CHECK_S)
    running = await start_provider(adapter, bind, tls=tls, insecure=insecure, health_check_s=every_s)
    await run_until_signal(running)
