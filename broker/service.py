"""The verification core: policy, fan-out, attestation and trace, without gRPC.

``VerificationService.verify`` is the whole request flow of the design brief: policy first
(deny by default), then the permitted checks to providers in parallel, then one signed
attestation per verified check, and the trace record made durable before anything is returned.
Its parts live beside it: idempotency (:mod:`onceonly.broker.idempotency`), the provider
contracts (:mod:`onceonly.broker.contracts`), the trace record and attestation payload
(:mod:`onceonly.broker.records`), and the ports it talks through (:mod:`onceonly.broker.ports`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from onceonly import metrics, telemetry
from onceonly.broker import idempotency
from onceonly.broker.attestation import AttestationSigner
from onceonly.broker.catalog import Catalog
from onceonly.broker.contracts import ProviderContracts, describe_mismatches
from onceonly.broker.domain import (
    AgreementRef,
    AllowedUse,
    CheckOutcome,
    CheckRequest,
    CheckStatus,
    DenialReason,
    PolicyDecision,
    StoredReply,
    TraceRecord,
    VerificationRequest,
    VerifyResult,
    Violation,
)
from onceonly.broker.errors import DuplicateRequest, LedgerUnavailable, denied
from onceonly.broker.ports import EvidenceCheck, Ledger, PolicyCheck, Pseudonymiser, QuotaCounter
from onceonly.broker.providers import (
    ProviderAnswer,
    ProviderClient,
    ProviderError,
    ProviderQuery,
    ProviderTimeout,
    ProviderUnavailable,
    TicketUnknown,
)
from onceonly.broker.records import attestation_payload, trace_record
from onceonly.evidence import EvidenceError, UnknownEvidenceCertificate, evidence_claims
from onceonly.fields import FieldSpec, normalise_claims

__all__ = ["ServiceSettings", "VerificationService", "VerifyResult", "describe_mismatches", "new_trace_id"]

log = logging.getLogger(__name__)

# Trace ids must be unique, not secret: a PRNG seeded once from the OS avoids a system call
# (and a GIL hand-off) per request on the hot path.
_ids = random.Random(os.urandom(32))


def new_trace_id() -> str:
    """A random 128-bit id in the UUID4 text form without dashes."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4).hex


@dataclass(frozen=True, slots=True)
class _Answered:
    """A provider's answer to one check, not yet checked or attested."""

    check: CheckRequest
    claim_specs: tuple[FieldSpec, ...]
    provider_id: str
    answer: ProviderAnswer
    latency_ms: int


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    provider_timeout_s: float = 2.0
    """Deadline of each provider call, shortened to the caller's own deadline if that is sooner."""
    attestation_ttl: timedelta = timedelta(hours=24)
    """How long an attestation stays valid (its ``exp``)."""
    replay_cache_size: int = 10_000
    """Recent answers kept in memory so a retry is answered without a database read."""


class VerificationService:
    """Decides verification requests. Transport-free: the gRPC layer translates around it."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        policy: Callable[[], PolicyCheck],
        providers: Mapping[str, ProviderClient],
        signer: AttestationSigner,
        ledger: Ledger,
        pseudonymiser: Pseudonymiser,
        settings: ServiceSettings | None = None,
        evidence: EvidenceCheck | None = None,
        quotas: QuotaCounter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.catalog = catalog
        self._policy = policy
        self._providers = providers
        self._signer = signer
        self._ledger = ledger
        self._pseudonymiser = pseudonymiser
        self.settings = settings or ServiceSettings()
        self._evidence = evidence
        self._quotas = quotas
        self._clock = clock
        self._sleep = sleep
        """How the service waits for an agency that answers later (with ``clock``: simulated in tests)."""
        self._replies = idempotency.RecentReplies(self.settings.replay_cache_size)
        self.contracts = ProviderContracts(catalog, providers, evidence)

    async def check_providers(self, timeout: float = 3.0) -> dict[str, str]:
        """Compare every reachable provider with the catalog (see :meth:`ProviderContracts.check_all`)."""
        return await self.contracts.check_all(timeout)

    # -- verification ---------------------------------------------------------------------

    def allowed_uses(self, organization_id: str) -> dict[str, list[AllowedUse]]:
        """Certificate type id → how ``organization_id`` may use it now (its agreements in force)."""
        return self._policy().allowed_uses(organization_id, self._clock())

    def legal_references(
        self, organization_id: str, procedure_code: str, certificate_type_id: str
    ) -> list[str]:
        """The laws the agreements covering this use cite (see :meth:`Policy.legal_references`)."""
        return self._policy().legal_references(organization_id, procedure_code, certificate_type_id)

    async def verify(
        self,
        request: VerificationRequest,
        *,
        deadline_s: float | None = None,
        wait_for_deferred_s: float | None = None,
    ) -> VerifyResult:
        """Decide one request. Raises ``PolicyDenied``, ``DuplicateRequest`` or ``LedgerUnavailable``.

        A provider that answers later (``ProviderAnswer.ready_at``) is waited for up to
        ``wait_for_deferred_s`` (asynchronous jobs); without it the check is ``UNAVAILABLE``, saying
        when the agency will answer and that the request can be submitted asynchronously."""
        # The body's digest names the subject: only its keyed form is kept, in the stored reply.
        request = dataclasses.replace(request, digest=self._pseudonymiser.request_digest(request.digest))
        key = (request.consumer.organization_id, request.request_id)
        stored = await self._replies.settled(key)
        if stored is not None:
            return idempotency.replay(stored, request)
        self._replies.begin(key)
        try:
            with telemetry.span("onceonly.verify", lambda: _span_attributes(request)):
                return await self._decide(request, deadline_s, wait_for_deferred_s)
        finally:
            self._replies.end(key)

    async def answered_under(self, organization_id: str, prefix: str) -> bool:
        """Whether a request of ``organization_id`` whose id starts with ``prefix`` was decided."""
        return await self._ledger.has_replies(organization_id, prefix)

    async def stored_replies(self, organization_id: str, request_ids: list[str]) -> dict[str, StoredReply]:
        """The answers kept for these request ids (those decided and not purged), by request id."""
        return await self._ledger.find_replies(organization_id, request_ids)

    async def _decide(
        self, request: VerificationRequest, deadline_s: float | None, wait_for_deferred_s: float | None = None
    ) -> VerifyResult:
        started = time.perf_counter()
        trace_id = new_trace_id()
        now = self._clock()
        policy = self._policy()
        with telemetry.span("onceonly.policy"):
            decision = policy.evaluate(request, now)
        retry_after_s = None
        if decision.allowed and self._quotas is not None:
            decision, retry_after_s = await self._take_quotas(policy, request, decision, now)
        if not decision.allowed:
            violations = list(decision.violations)
            telemetry.set_attributes(
                {
                    "onceonly.trace_id": trace_id,
                    "onceonly.decision": "DENIED",
                    "onceonly.denial_reason": violations[0].reason.value,
                }
            )
            reply = idempotency.denial_reply(request, trace_id, violations)
            record = self._record(request, trace_id, now, started, violations=violations)
            stands = await self._commit(record, reply)
            if stands is not reply:
                # An earlier life of the broker answered this id: that answer (and its trace) stands.
                return idempotency.replay(stands, request)
            metrics.request("DENIED", violations[0].reason.value, _ms(started))
            raise denied(violations, trace_id, retry_after_s)

        telemetry.set_attributes({"onceonly.trace_id": trace_id, "onceonly.decision": "GRANTED"})
        timeout = self.settings.provider_timeout_s
        if deadline_s is not None:
            # Leave time to sign and record before the caller's own deadline.
            timeout = max(0.05, min(timeout, deadline_s - 0.1))
        wait_until = None if wait_for_deferred_s is None else now + timedelta(seconds=wait_for_deferred_s)
        asked = await asyncio.gather(
            *(self._ask(check, request, trace_id, timeout, wait_until) for check in request.checks)
        )
        outcomes = tuple(
            a if isinstance(a, CheckOutcome) else self._conclude(a, request, trace_id, now) for a in asked
        )
        result = VerifyResult(request.request_id, trace_id, outcomes, now)
        reply = idempotency.result_reply(request, result)
        record = self._record(request, trace_id, now, started, outcomes=outcomes, grounds=decision.grounds)
        stands = await self._commit(record, reply)
        if stands is not reply:
            return idempotency.replay(stands, request)
        if metrics.enabled():
            metrics.request("GRANTED", "", _ms(started))
            for o in outcomes:
                metrics.check(o.provider_id, o.status.value, o.latency_ms)
        return result

    async def _take_quotas(
        self, policy: PolicyCheck, request: VerificationRequest, decision: PolicyDecision, now: datetime
    ) -> tuple[PolicyDecision, float | None]:
        """Count the request against the quotas of the master agreements it is allowed under; a
        denial (``QUOTA_EXCEEDED``, naming the agreement) when one is used up."""
        assert self._quotas is not None
        org = request.consumer.organization_id
        counted: set[str] = set()
        for ground in decision.grounds:
            agreement = policy.agreement(ground.agreement_id)
            if agreement is None or not (agreement.quota_per_minute or agreement.quota_per_day):
                continue
            if agreement.master_agreement_id in counted:
                continue
            counted.add(agreement.master_agreement_id)
            breach = await self._quotas.take(
                agreement.master_agreement_id, org, agreement.quota_per_minute, agreement.quota_per_day, now
            )
            if breach is not None:
                per = "minute" if breach.window == "minute" else "day"
                violation = Violation(
                    DenialReason.QUOTA_EXCEEDED,
                    f"agreement {agreement.id}",
                    f"Organisation {org!r} has made its {breach.cap} requests per {per} allowed by master "
                    f"agreement {agreement.master_agreement_id!r} (version {agreement.master_version}) "
                    f"under agreement {agreement.id!r} (version {agreement.version}); try again in "
                    f"{breach.retry_after_s:.0f} s with a new request id.",
                )
                return PolicyDecision((violation,)), breach.retry_after_s
        return decision, None

    def _record(
        self,
        request: VerificationRequest,
        trace_id: str,
        now: datetime,
        started: float,
        *,
        outcomes: tuple[CheckOutcome, ...] = (),
        violations: list[Violation] | None = None,
        grounds: tuple[AgreementRef, ...] = (),
    ) -> TraceRecord:
        return trace_record(
            request,
            trace_id=trace_id,
            created_at=now,
            subject_ref=self._pseudonymiser.pseudonym(request.subject.key()),
            duration_ms=_ms(started),
            outcomes=outcomes,
            violations=violations or (),
            grounds=grounds,
        )

    async def _commit(self, record: TraceRecord, reply: StoredReply) -> StoredReply:
        """Make the trace durable; return the reply that stands for this request id."""
        try:
            with telemetry.span("onceonly.ledger.append"):
                await self._ledger.append(record, reply)
        except DuplicateRequest:
            # Another broker process, or an earlier life of this one, answered this id first.
            stored = await self._ledger.find_reply(reply.organization_id, reply.request_id)
            if stored is None:
                raise LedgerUnavailable("duplicate request id without a recorded answer") from None
            reply = stored
        self._replies.remember(reply)
        return reply

    async def _ask(
        self,
        check: CheckRequest,
        request: VerificationRequest,
        trace_id: str,
        timeout: float,
        wait_until: datetime | None = None,
    ) -> CheckOutcome | _Answered:
        """Ask the provider; a failure is already the check's outcome, an answer still needs checking."""
        definition = self.catalog.certificate_types[check.certificate_type_id]
        provider_id = definition.provider_id
        client = self._providers.get(provider_id)
        if client is None:
            return CheckOutcome(
                check.certificate_type_id,
                provider_id,
                CheckStatus.UNAVAILABLE,
                detail=f"no address configured for provider {provider_id}",
            )
        started = time.perf_counter()
        try:
            problem = await self.contracts.problem(provider_id, timeout)
            if problem:
                return CheckOutcome(
                    check.certificate_type_id,
                    provider_id,
                    CheckStatus.ERROR,
                    detail=f"provider disagrees with the catalog: {problem}",
                )
            query = ProviderQuery(
                request.request_id,
                trace_id,
                check.certificate_type_id,
                request.subject,
                check.parameters,
                request.consumer.organization_id,
                request.purpose.procedure_code,
                request.legal_basis.kind,
            )
            with telemetry.span(
                "onceonly.provider.attest",
                lambda: {
                    "onceonly.provider": provider_id,
                    "onceonly.certificate_type": check.certificate_type_id,
                },
                kind=telemetry.trace.SpanKind.CLIENT,
            ):
                answer = await client.attest(query, timeout)
                while answer.ready_at is not None:  # the agency answers later
                    if wait_until is None or answer.ready_at > wait_until:
                        return CheckOutcome(
                            check.certificate_type_id,
                            provider_id,
                            CheckStatus.UNAVAILABLE,
                            detail=self._later_detail(provider_id, answer.ready_at, wait_until),
                            latency_ms=_ms(started),
                        )
                    await self._sleep(max(0.0, (answer.ready_at - self._clock()).total_seconds()))
                    try:
                        answer = await client.collect(answer.ticket, timeout)
                    except TicketUnknown:  # the provider restarted: ask the question again
                        answer = await client.attest(query, timeout)
        except ProviderError as exc:
            return CheckOutcome(
                check.certificate_type_id,
                provider_id,
                CheckStatus(exc.status),
                detail=self._caseworker_detail(provider_id, exc),
                latency_ms=_ms(started),
            )
        return _Answered(check, definition.claims, provider_id, answer, _ms(started))

    def _later_detail(self, provider_id: str, ready_at: datetime, wait_until: datetime | None) -> str:
        found = self.catalog.providers.get(provider_id)
        name = found.name if found is not None else provider_id
        when = ready_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if wait_until is None:
            return f"{name} answers this later (from {when}): submit it asynchronously (SubmitVerification)"
        return f"{name} answers this later (from {when}) than this job waits for"

    def _caseworker_detail(self, provider_id: str, exc: ProviderError) -> str:
        """What a caseworker reads of a provider failure; addresses and transport details stay in
        the logs."""
        found = self.catalog.providers.get(provider_id)
        name = found.name if found is not None else provider_id
        if isinstance(exc, ProviderUnavailable):
            log.warning("provider unavailable", extra={"provider": provider_id, "error": str(exc)[:300]})
            if str(exc).startswith("circuit open"):
                return f"{name} is not called for a moment after repeated failures (circuit open); try later"
            return f"{name} could not be reached; try again later"
        if isinstance(exc, ProviderTimeout):
            return f"{name} did not answer in time; try again later"
        return str(exc)

    def _conclude(
        self, a: _Answered, request: VerificationRequest, trace_id: str, now: datetime
    ) -> CheckOutcome:
        check, provider_id, answer, latency = a.check, a.provider_id, a.answer, a.latency_ms
        if self._evidence is not None:
            problem = self._evidence_problem(answer, check, request, trace_id, provider_id)
            if problem:
                self._count_fault(provider_id, f"evidence rejected: {problem}")
                return CheckOutcome(
                    check.certificate_type_id,
                    provider_id,
                    CheckStatus.ERROR,
                    detail=f"provider evidence rejected: {problem}",
                    latency_ms=latency,
                )
        if not answer.found:
            return CheckOutcome(
                check.certificate_type_id,
                provider_id,
                CheckStatus.SUBJECT_NOT_FOUND,
                detail="the provider holds no record of the subject",
                latency_ms=latency,
                evidence=answer.evidence,
            )
        try:
            claims = normalise_claims(a.claim_specs, answer.claims)
        except ValueError as exc:
            self._count_fault(provider_id, f"malformed claims: {exc}")
            return CheckOutcome(
                check.certificate_type_id,
                provider_id,
                CheckStatus.ERROR,
                detail=f"provider answered malformed claims: {exc}",
                latency_ms=latency,
            )
        payload = attestation_payload(
            request,
            trace_id=trace_id,
            issued_at=now,
            ttl=self.settings.attestation_ttl,
            check=check,
            provider_id=provider_id,
            claims=claims,
            evidence=answer.evidence,
        )
        return CheckOutcome(
            check.certificate_type_id,
            provider_id,
            CheckStatus.VERIFIED,
            claims=claims,
            attestation=self._signer.sign(payload),
            latency_ms=latency,
            evidence=answer.evidence,
        )

    def _count_fault(self, provider_id: str, why: str) -> None:
        """A bad answer found after the call returned counts against the provider (circuit breaker)."""
        record = getattr(self._providers.get(provider_id), "record_failure", None)
        if record is not None:
            record(why)

    def _evidence_problem(
        self,
        answer: ProviderAnswer,
        check: CheckRequest,
        request: VerificationRequest,
        trace_id: str,
        provider_id: str,
    ) -> str:
        """Why the provider's signed evidence is not acceptable ("" when it is)."""
        assert self._evidence is not None
        expected = evidence_claims(
            request_id=request.request_id,
            trace_id=trace_id,
            certificate_type_id=check.certificate_type_id,
            subject=request.subject.key(),
            parameters=check.parameters,
            found=answer.found,
            claims=answer.claims,
        )
        try:
            self._evidence.verify(answer.evidence, provider_id, expected)
        except UnknownEvidenceCertificate as exc:
            self.contracts.forget(provider_id)  # it may have a new certificate: describe it again
            return str(exc)
        except EvidenceError as exc:
            log.warning("provider evidence rejected", extra={"provider": provider_id, "error": str(exc)})
            return str(exc)
        return ""


def _span_attributes(request: VerificationRequest) -> dict[str, Any]:
    """What an operator's span may say about a request: why and by whom, never about whom."""
    return {
        "onceonly.request_id": request.request_id,
        "onceonly.consumer": request.consumer.organization_id,
        "onceonly.procedure_code": request.purpose.procedure_code,
        "onceonly.legal_basis": request.legal_basis.kind.value,
        "onceonly.legal_reference": request.legal_basis.reference,
        "onceonly.certificate_types": [c.certificate_type_id for c in request.checks],
    }


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
