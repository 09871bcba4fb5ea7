"""The verification core: policy, fan-out, attestation and trace, without gRPC.

``VerificationService.verify`` is the whole request flow of the design brief:
policy first (deny by default), then the permitted checks to providers in parallel,
then one signed attestation per verified check, and the trace record made durable
before anything is returned. Idempotency rides on the ledger's unique
(organisation, request id): a retry gets the answer that was recorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from onceonly import telemetry
from onceonly.broker.attestation import AttestationSigner
from onceonly.broker.catalog import Catalog
from onceonly.broker.domain import (
    CheckOutcome,
    CheckRequest,
    CheckStatus,
    Decision,
    DenialReason,
    PolicyDecision,
    StoredReply,
    TracedOutcome,
    TraceRecord,
    VerificationRequest,
    Violation,
)
from onceonly.broker.errors import CatalogError, DuplicateRequest, LedgerUnavailable, PolicyDenied
from onceonly.broker.providers import (
    ProviderAnswer,
    ProviderClient,
    ProviderDescription,
    ProviderError,
    ProviderQuery,
)
from onceonly.evidence import EvidenceError, UnknownEvidenceCertificate, evidence_claims, evidence_digest
from onceonly.fields import FieldSpec, normalise_claims

log = logging.getLogger(__name__)

# Trace ids must be unique, not secret: a PRNG seeded once from the OS avoids a system call
# (and a GIL hand-off) per request on the hot path.
_ids = random.Random(os.urandom(32))


def new_trace_id() -> str:
    """A random 128-bit id in the UUID4 text form without dashes."""
    return uuid.UUID(int=_ids.getrandbits(128), version=4).hex


class Ledger(Protocol):
    """The durable trace store the service writes to (see ``broker.ledger``)."""

    async def append(self, record: TraceRecord, reply: StoredReply | None) -> None: ...

    async def find_reply(self, organization_id: str, request_id: str) -> StoredReply | None: ...


class Pseudonymiser(Protocol):
    def pseudonym(self, subject_key: str) -> str: ...


class EvidenceCheck(Protocol):
    """Checks a provider's signed evidence (see ``onceonly.evidence.EvidenceVerifier``)."""

    def register(self, provider_id: str, certificate_b64: str) -> None: ...

    def verify(self, token: str, provider_id: str, expected: Mapping[str, Any]) -> None: ...


class PolicyCheck(Protocol):
    def evaluate(self, request: VerificationRequest, now: datetime) -> PolicyDecision: ...


@dataclass(frozen=True, slots=True)
class _Answered:
    """A provider's answer to one check, not yet checked or attested."""

    check: CheckRequest
    claim_specs: tuple[FieldSpec, ...]
    provider_id: str
    answer: ProviderAnswer
    latency_ms: int


@dataclass(frozen=True, slots=True)
class VerifyResult:
    request_id: str
    trace_id: str
    outcomes: tuple[CheckOutcome, ...]
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    provider_timeout_s: float = 2.0
    """Deadline of each provider call, shortened to the caller's own deadline if that is sooner."""
    attestation_ttl: timedelta = timedelta(hours=24)
    """How long an attestation stays valid (its ``exp``)."""
    replay_cache_size: int = 10_000
    """Recent answers kept in memory so a retry is answered without a database read."""


def describe_mismatches(catalog: Catalog, provider_id: str, description: ProviderDescription) -> list[str]:
    """What differs between the catalog and what a provider says it serves (empty: agree)."""
    problems = []
    if description.provider_id != provider_id:
        problems.append(f"provider says it is {description.provider_id!r}, catalog expects {provider_id!r}")
    offered = {t.certificate_type_id: t for t in description.certificate_types}
    for definition in catalog.served_by(provider_id):
        served = offered.get(definition.id)
        if served is None:
            problems.append(f"{definition.id} is not served by {provider_id}")
            continue
        for kind, ours, theirs in (
            ("parameters", definition.parameters, served.parameters),
            ("claims", definition.claims, served.claims),
        ):
            if sorted(ours, key=lambda s: s.name) != sorted(theirs, key=lambda s: s.name):
                problems.append(
                    f"{definition.id}: {kind} differ (catalog {_names(ours)}, provider {_names(theirs)})"
                )
    return problems


def _names(specs: Any) -> str:
    return ", ".join(f"{s.name}:{s.type.value}{'' if s.required else '?'}" for s in specs) or "none"


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.catalog = catalog
        self._policy = policy
        self._providers = providers
        self._signer = signer
        self._ledger = ledger
        self._pseudonymiser = pseudonymiser
        self.settings = settings or ServiceSettings()
        self._evidence = evidence
        self._clock = clock
        self._recent: OrderedDict[tuple[str, str], StoredReply] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        # Provider contract state: None = not yet compared, "" = agrees, text = mismatch.
        self._contract: dict[str, str | None] = dict.fromkeys(catalog.providers)
        # One lock per provider: an unreachable provider does not hold up the others' first contact.
        self._contract_locks = {pid: asyncio.Lock() for pid in catalog.providers}

    # -- provider contracts -------------------------------------------------------------

    async def check_providers(self, timeout: float = 3.0) -> dict[str, str]:
        """Compare every reachable provider's ``Describe`` with the catalog.

        Returns provider id → "ok" or why it could not be reached. A provider that answers
        but disagrees with the catalog raises ``CatalogError``: serving would be wrong.
        """
        states = await asyncio.gather(*(self._compare(pid, timeout) for pid in self.catalog.providers))
        mismatches = [
            f"{pid}: {state}" for pid, state in zip(self.catalog.providers, states, strict=True) if state
        ]
        if mismatches:
            raise CatalogError(
                "providers failed the start-up check against the catalog: " + "; ".join(mismatches)
            )
        return {
            pid: "ok" if self._contract[pid] == "" else "unreachable; compared on first use"
            for pid in self.catalog.providers
        }

    async def _compare(self, provider_id: str, timeout: float) -> str:
        client = self._providers.get(provider_id)
        if client is None:
            return ""
        try:
            description = await client.describe(timeout)
        except ProviderError as exc:
            log.warning("provider unreachable", extra={"provider": provider_id, "error": str(exc)})
            return ""
        problems = describe_mismatches(self.catalog, provider_id, description)
        if self._evidence is not None:
            try:
                self._evidence.register(provider_id, description.evidence_certificate)
            except EvidenceError as exc:
                problems.append(f"evidence certificate refused: {exc}")
        self._contract[provider_id] = "; ".join(problems)
        return self._contract[provider_id] or ""

    async def _contract_problem(self, provider_id: str, timeout: float) -> str:
        if self._contract.get(provider_id) is None:
            async with self._contract_locks[provider_id]:
                if self._contract.get(provider_id) is None:
                    await self._compare(provider_id, timeout)
        return self._contract.get(provider_id) or ""

    # -- verification ---------------------------------------------------------------------

    async def verify(self, request: VerificationRequest, *, deadline_s: float | None = None) -> VerifyResult:
        """Decide one request. Raises ``PolicyDenied``, ``DuplicateRequest`` or ``LedgerUnavailable``."""
        key = (request.consumer.organization_id, request.request_id)
        stored = self._recent.get(key)
        if stored is None and key in self._inflight:
            # The same request id is being decided right now: wait and answer the same.
            await asyncio.shield(self._inflight[key])
            stored = self._recent.get(key)
        if stored is not None:
            return self._replay(stored, request)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            with telemetry.span("onceonly.verify", lambda: _span_attributes(request)):
                return await self._decide(request, deadline_s)
        finally:
            del self._inflight[key]
            done.set_result(None)

    async def _decide(self, request: VerificationRequest, deadline_s: float | None) -> VerifyResult:
        started = time.perf_counter()
        trace_id = new_trace_id()
        now = self._clock()
        with telemetry.span("onceonly.policy"):
            decision = self._policy().evaluate(request, now)
        if not decision.allowed:
            violations = list(decision.violations)
            telemetry.set_attributes(
                {
                    "onceonly.trace_id": trace_id,
                    "onceonly.decision": "DENIED",
                    "onceonly.denial_reason": violations[0].reason.value,
                }
            )
            reply = self._denial_reply(request, trace_id, violations)
            record = self._record(request, trace_id, now, started, (), violations)
            if await self._commit(record, reply, request) is not reply:
                # An earlier life of the broker answered this id: that answer (and its trace) stands.
                return self._replay(self._recent[(reply.organization_id, reply.request_id)], request)
            raise PolicyDenied(violations, trace_id)

        telemetry.set_attributes({"onceonly.trace_id": trace_id, "onceonly.decision": "GRANTED"})
        timeout = self.settings.provider_timeout_s
        if deadline_s is not None:
            # Leave time to sign and record before the caller's own deadline.
            timeout = max(0.05, min(timeout, deadline_s - 0.1))
        asked = await asyncio.gather(
            *(self._ask(check, request, trace_id, timeout) for check in request.checks)
        )
        outcomes = self._conclude_all(list(asked), request, trace_id, now)
        result = VerifyResult(request.request_id, trace_id, outcomes, now)
        reply = StoredReply(
            request.consumer.organization_id,
            request.request_id,
            request.digest,
            "response",
            _encode_result(result),
        )
        record = self._record(request, trace_id, now, started, outcomes, ())
        if await self._commit(record, reply, request) is not reply:
            return self._replay(self._recent[(reply.organization_id, reply.request_id)], request)
        return result

    async def _commit(
        self, record: TraceRecord, reply: StoredReply, request: VerificationRequest
    ) -> StoredReply:
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
        self._remember(reply)
        return reply

    def _remember(self, reply: StoredReply) -> None:
        key = (reply.organization_id, reply.request_id)
        self._recent[key] = reply
        self._recent.move_to_end(key)
        while len(self._recent) > self.settings.replay_cache_size:
            self._recent.popitem(last=False)

    def _replay(self, stored: StoredReply, request: VerificationRequest) -> VerifyResult:
        if stored.request_digest != request.digest:
            raise DuplicateRequest(request.request_id)
        data = orjson.loads(stored.payload)
        if stored.kind == "denied":
            violations = [Violation(DenialReason(v[0]), v[1], v[2]) for v in data["violations"]]
            raise PolicyDenied(violations, data["trace_id"])
        return _decode_result(data)

    async def _ask(
        self, check: CheckRequest, request: VerificationRequest, trace_id: str, timeout: float
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
            problem = await self._contract_problem(provider_id, timeout)
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
        except ProviderError as exc:
            return CheckOutcome(
                check.certificate_type_id,
                provider_id,
                CheckStatus(exc.status),
                detail=str(exc),
                latency_ms=_ms(started),
            )
        return _Answered(check, definition.claims, provider_id, answer, _ms(started))

    def _conclude_all(
        self,
        asked: list[CheckOutcome | _Answered],
        request: VerificationRequest,
        trace_id: str,
        now: datetime,
    ) -> tuple[CheckOutcome, ...]:
        """Check evidence and claims, and sign, for every check a provider answered."""
        return tuple(
            a if isinstance(a, CheckOutcome) else self._conclude(a, request, trace_id, now) for a in asked
        )

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
        payload = self._payload(request, trace_id, now, check, provider_id, claims)
        if answer.evidence:
            payload["provider_evidence_sha256"] = evidence_digest(answer.evidence)
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
            self._contract[provider_id] = None  # it may have a new certificate: describe it again
            return str(exc)
        except EvidenceError as exc:
            log.warning("provider evidence rejected", extra={"provider": provider_id, "error": str(exc)})
            return str(exc)
        return ""

    def _payload(
        self,
        request: VerificationRequest,
        trace_id: str,
        now: datetime,
        check: CheckRequest,
        provider_id: str,
        claims: Mapping[str, Any],
    ) -> dict[str, Any]:
        issued = int(now.timestamp())
        return {
            "sub": request.subject.key(),
            "aud": request.consumer.organization_id,
            "iat": issued,
            "exp": issued + int(self.settings.attestation_ttl.total_seconds()),
            "jti": f"{trace_id}.{check.certificate_type_id}",
            "request_id": request.request_id,
            "trace_id": trace_id,
            "certificate_type": check.certificate_type_id,
            "provider": provider_id,
            "parameters": dict(check.parameters),
            "claims": dict(claims),
            "purpose": {
                "procedure_code": request.purpose.procedure_code,
                "case_file_id": request.purpose.case_file_id,
            },
            "legal_basis": {
                "kind": request.legal_basis.kind.value,
                "reference": request.legal_basis.reference,
            },
        }

    def _record(
        self,
        request: VerificationRequest,
        trace_id: str,
        now: datetime,
        started: float,
        outcomes: tuple[CheckOutcome, ...],
        violations: tuple[Violation, ...] | list[Violation],
    ) -> TraceRecord:
        return TraceRecord(
            trace_id=trace_id,
            request_id=request.request_id,
            request_digest=request.digest,
            created_at=now,
            consumer_organization_id=request.consumer.organization_id,
            consumer_unit=request.consumer.unit,
            officer_id=request.consumer.officer_id,
            procedure_code=request.purpose.procedure_code,
            purpose_text=request.purpose.purpose_text,
            case_file_id=request.purpose.case_file_id,
            legal_basis_kind=request.legal_basis.kind,
            legal_basis_reference=request.legal_basis.reference,
            subject_document_type=request.subject.document_type,
            subject_ref=self._pseudonymiser.pseudonym(request.subject.key()),
            certificate_type_ids=tuple(c.certificate_type_id for c in request.checks),
            decision=Decision.DENIED if violations else Decision.GRANTED,
            denial_reason=violations[0].reason if violations else None,
            denial_detail="; ".join(v.description for v in violations),
            outcomes=tuple(
                TracedOutcome(
                    o.certificate_type_id,
                    o.provider_id,
                    o.status,
                    o.latency_ms,
                    evidence_digest(o.evidence) if o.evidence else "",
                )
                for o in outcomes
            ),
            duration_ms=_ms(started),
        )

    @staticmethod
    def _denial_reply(
        request: VerificationRequest, trace_id: str, violations: list[Violation]
    ) -> StoredReply:
        payload = {
            "trace_id": trace_id,
            "violations": [[v.reason.value, v.subject, v.description] for v in violations],
        }
        return StoredReply(
            request.consumer.organization_id,
            request.request_id,
            request.digest,
            "denied",
            orjson.dumps(payload),
        )


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


def _encode_result(result: VerifyResult) -> bytes:
    return orjson.dumps(
        {
            "request_id": result.request_id,
            "trace_id": result.trace_id,
            "decided_at": result.decided_at.isoformat(),
            "outcomes": [
                [
                    o.certificate_type_id,
                    o.provider_id,
                    o.status.value,
                    o.claims,
                    o.attestation,
                    o.evidence,
                    o.detail,
                    o.latency_ms,
                ]
                for o in result.outcomes
            ],
        }
    )


def _decode_result(data: Mapping[str, Any]) -> VerifyResult:
    outcomes = tuple(
        CheckOutcome(cid, pid, CheckStatus(status), claims, attestation, detail, latency, evidence)
        for cid, pid, status, claims, attestation, evidence, detail, latency in data["outcomes"]
    )
    return VerifyResult(
        data["request_id"], data["trace_id"], outcomes, datetime.fromisoformat(data["decided_at"])
    )
