"""The Broker gRPC service: translates protobuf ⇄ domain; errors leave through :mod:`onceonly.status`.

Every failure ends the call through :func:`onceonly.status.abort` (a bulk subject's failure
becomes that subject's result through :func:`onceonly.status.status_for`): a status with
``google.rpc.ErrorInfo`` and the details of its kind. Nothing else reaches the caller: no stack
trace, no internal message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Callable

from google.rpc import code_pb2
from google.rpc.status_pb2 import Status

from onceonly.broker import idempotency, translate
from onceonly.broker.attestation import KeyRing
from onceonly.broker.auth import authorise_consumer, current_principal, officer_identification
from onceonly.broker.domain import OfficerIdentification
from onceonly.broker.errors import FieldViolation, InvalidRequest, UnknownCertificateType
from onceonly.broker.jobs import (
    ESTIMATED_SUBJECTS_PER_S,
    JOB_MAX_SUBJECTS,
    JobConflict,
    JobRunner,
    JobStore,
    StoredJob,
)
from onceonly.broker.service import VerificationService
from onceonly.errors import AlreadyExists, NotFound, Unavailable, permission_denied
from onceonly.grpc_types import Context
from onceonly.status import abort, status_for
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from onceonly.validation import ID_PATTERN, FieldErrors
from onceonly.wire import LEGAL_BASIS_KIND

log = logging.getLogger(__name__)

BULK_DEFAULT_WINDOW = 64
BULK_MAX_WINDOW = 256
# A structurally valid stand-in subject, to validate a bulk header on its own.
_PLACEHOLDER_SUBJECT = common_pb2.Subject(
    document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number="00000000T"
)
SERVICE_NAME = broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name
_JOB_STATES = {
    "PENDING": broker_pb2.JOB_STATE_PENDING,
    "IN_PROGRESS": broker_pb2.JOB_STATE_IN_PROGRESS,
    "DONE": broker_pb2.JOB_STATE_DONE,
    "EXPIRED": broker_pb2.JOB_STATE_EXPIRED,
}


def _template(header: broker_pb2.BulkHeader) -> broker_pb2.VerifyRequest:
    """The request every subject under ``header`` shares (subject and request id to fill in)."""
    return broker_pb2.VerifyRequest(
        consumer=header.consumer, purpose=header.purpose, legal_basis=header.legal_basis, checks=header.checks
    )


class BrokerServicer(broker_pb2_grpc.BrokerServicer):
    """gRPC face of :class:`VerificationService`."""

    def __init__(
        self,
        service: VerificationService,
        keys: KeyRing,
        *,
        jobs: JobStore | None = None,
        retention_days: int = 1825,
        job_wait_s: float = 86400.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ):
        self._service = service
        self._catalog = translate.catalog_message(service.catalog)
        self._keys = keys
        self._jobs = jobs
        self._retention = dt.timedelta(days=retention_days)
        self._job_wait_s = job_wait_s
        self._clock = clock
        self.runner: JobRunner | None = None
        """Woken when a job is submitted (set by the app that runs it)."""

    async def Verify(self, request: broker_pb2.VerifyRequest, context: Context) -> broker_pb2.VerifyResponse:
        try:
            return await self.verify(request, context.time_remaining())
        except Exception as exc:  # every failure leaves through the one table
            await abort(context, exc)

    async def verify(
        self,
        request: broker_pb2.VerifyRequest,
        deadline_s: float | None,
        identified: OfficerIdentification | None = None,
    ) -> broker_pb2.VerifyResponse:
        """``Verify`` for the caller of the call being served (also the SCSP facade's way in);
        raises what the call ends with. ``identified`` overrides how the officer is known."""
        domain_request = translate.verification_request(request, self._service.catalog)
        # The caller must be the consumer it names: checked after the (pure) field validation
        # and before the service runs, so a spoofed request is neither traced nor answered.
        refusal = authorise_consumer(request.consumer.organization_id, request.consumer.officer_id, "Verify")
        if refusal is not None:
            raise refusal
        domain_request = translate.identified(domain_request, identified or officer_identification())
        result = await self._service.verify(domain_request, deadline_s=deadline_s)
        return translate.verify_response(
            result.request_id, result.trace_id, result.outcomes, result.decided_at
        )

    async def VerifyBulk(
        self, request_iterator: AsyncIterator[broker_pb2.BulkVerifyRequest], context: Context
    ) -> AsyncIterator[broker_pb2.BulkVerifyResult]:
        """Decide many subjects under one header, at most ``window`` at a time.

        Reading the next subject waits for a free slot, so a fast client is slowed by gRPC
        flow control instead of filling the broker's memory.
        """
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("item") != "header":
            await abort(
                context, InvalidRequest([FieldViolation("header", "the first message must be a header")])
            )
            return
        header = first.header
        template = _template(header)
        try:
            self._check_header(template)
        except Exception as exc:
            await abort(context, exc)
        refusal = authorise_consumer(
            header.consumer.organization_id, header.consumer.officer_id, "VerifyBulk"
        )
        if refusal is not None:  # the whole stream is refused: no subject is decided or traced
            await abort(context, refusal)
        identified = officer_identification()
        window = min(header.window or BULK_DEFAULT_WINDOW, BULK_MAX_WINDOW)
        slots = asyncio.Semaphore(window)
        results: asyncio.Queue[broker_pb2.BulkVerifyResult | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def decide(item: broker_pb2.BulkSubject) -> None:
            try:
                results.put_nowait(await self._bulk_one(template, item, identified))
            finally:
                slots.release()

        async def read() -> None:
            try:
                async for message in request_iterator:
                    await slots.acquire()
                    if message.WhichOneof("item") != "subject":
                        slots.release()
                        error = InvalidRequest(
                            [FieldViolation("subject", "only subjects may follow the header")]
                        )
                        results.put_nowait(broker_pb2.BulkVerifyResult(error=status_for(error)))
                        continue
                    task = asyncio.create_task(decide(message.subject))
                    running.add(task)
                    task.add_done_callback(running.discard)
                if running:
                    await asyncio.wait(set(running))
            finally:
                results.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (result := await results.get()) is not None:
                yield result
            await reader  # surfaces a failure of the request stream itself
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()

    def _check_header(self, template: broker_pb2.VerifyRequest) -> None:
        """Validate a bulk header on its own: bad fields are named under ``header.``."""
        probe = broker_pb2.VerifyRequest()
        probe.CopyFrom(template)
        probe.request_id = "header"
        probe.subject.CopyFrom(_PLACEHOLDER_SUBJECT)
        try:
            translate.verification_request(probe, self._service.catalog)
        except InvalidRequest as exc:
            raise InvalidRequest(
                [FieldViolation(f"header.{v.field}", v.description) for v in exc.violations]
            ) from None
        except UnknownCertificateType as exc:
            raise UnknownCertificateType(exc.certificate_type_id, f"header.{exc.field}") from None

    # --- asynchronous verifications ----------------------------------------------------------

    async def SubmitVerification(
        self, request: broker_pb2.SubmitVerificationRequest, context: Context
    ) -> broker_pb2.VerificationJob:
        try:
            return await self.submit(request)
        except Exception as exc:
            await abort(context, exc)

    async def submit(
        self,
        request: broker_pb2.SubmitVerificationRequest,
        identified: OfficerIdentification | None = None,
    ) -> broker_pb2.VerificationJob:
        """``SubmitVerification`` for the caller of the call being served; raises what it ends with."""
        jobs = self._job_store()
        c = FieldErrors()
        c.text("submission_id", request.submission_id, max_len=64, pattern=ID_PATTERN)
        if not 1 <= len(request.subjects) <= JOB_MAX_SUBJECTS:
            c.add("subjects", f"must hold 1 to {JOB_MAX_SUBJECTS} subjects, not {len(request.subjects)}")
        seen: dict[str, int] = {}
        for i, item in enumerate(request.subjects):
            field = f"subjects[{i}].request_id"
            c.no_identifiers(field, c.text(field, item.request_id, max_len=64, pattern=ID_PATTERN))
            if item.request_id in seen:
                c.add(field, f"repeats subjects[{seen[item.request_id]}].request_id")
            seen.setdefault(item.request_id, i)
        if c.violations:
            raise InvalidRequest(c.violations)
        self._check_header(_template(request.header))
        consumer = request.header.consumer
        refusal = authorise_consumer(consumer.organization_id, consumer.officer_id, "SubmitVerification")
        if refusal is not None:  # refused whole: nothing is stored, decided or traced
            raise refusal
        identified = identified or officer_identification()
        now = self._clock()
        try:
            job, created = await asyncio.to_thread(
                jobs.submit,
                consumer.organization_id,
                request,
                identified.value,
                now,
                now + self._retention,
            )
        except JobConflict:
            raise AlreadyExists(
                f"submission id {request.submission_id!r} was already used with a different body",
                reason="DUPLICATE_SUBMISSION_ID",
                metadata={"field": "submission_id"},
            ) from None
        if created and self.runner is not None:
            self.runner.wake()
        return await self._job_message(jobs, job, now)

    async def GetVerificationResult(
        self, request: broker_pb2.GetVerificationResultRequest, context: Context
    ) -> broker_pb2.VerificationJob:
        try:
            return await self.verification_result(request)
        except Exception as exc:
            await abort(context, exc)

    async def verification_result(
        self, request: broker_pb2.GetVerificationResultRequest
    ) -> broker_pb2.VerificationJob:
        """``GetVerificationResult`` for the caller of the call being served; raises what it ends with."""
        jobs = self._job_store()
        c = FieldErrors()
        c.text("job_id", request.job_id, max_len=64, pattern=ID_PATTERN)
        if c.violations:
            raise InvalidRequest(c.violations)
        principal = current_principal()
        if principal is None or principal.kind != "consumer":
            raise permission_denied("CONSUMERS_ONLY", "only consumer applications read verification results")
        job = await asyncio.to_thread(jobs.get, request.job_id)
        if job is None:
            raise NotFound(
                f"no verification job {request.job_id!r}",
                resource_type="onceonly.v1.VerificationJob",
                resource_name=request.job_id,
                field="job_id",
                description="no such job",
                reason="JOB_NOT_FOUND",
            )
        if job.organization_id != principal.organization_id:
            raise permission_denied(
                "NOT_YOUR_JOB", f"job {request.job_id!r} was submitted by another organisation"
            )
        now = self._clock()
        message = await self._job_message(jobs, job, now)
        if message.state == broker_pb2.JOB_STATE_DONE:
            message.results.extend(await self._results(jobs, job))
        return message

    def _job_store(self) -> JobStore:
        if self._jobs is None:
            raise Unavailable("asynchronous verifications are not enabled on this broker")
        return self._jobs

    async def _job_message(
        self, jobs: JobStore, job: StoredJob, now: dt.datetime
    ) -> broker_pb2.VerificationJob:
        state = job.state_at(now)
        message = broker_pb2.VerificationJob(
            job_id=job.job_id,
            submission_id=job.submission_id,
            state=_JOB_STATES[state],
            subjects=job.subjects,
            decided=job.decided,
        )
        message.submitted_at.FromDatetime(job.submitted_at)
        message.expires_at.FromDatetime(job.expires_at)
        if job.done_at is not None:
            message.done_at.FromDatetime(job.done_at)
            message.estimated_done_at.FromDatetime(job.done_at)
        elif state != "EXPIRED":
            ahead = await asyncio.to_thread(jobs.subjects_queued_before, job.submitted_at)
            left = ahead + job.subjects - job.decided
            message.estimated_done_at.FromDatetime(
                now + dt.timedelta(seconds=left / ESTIMATED_SUBJECTS_PER_S)
            )
        return message

    async def _results(self, jobs: JobStore, job: StoredJob) -> list[broker_pb2.BulkVerifyResult]:
        """Every subject's result: its refusal as recorded, or its answer as the ledger keeps it."""
        items = await asyncio.to_thread(jobs.items, job.job_id)
        decided = [item.request_id for item in items if item.error is None]
        replies = await self._service.stored_replies(job.organization_id, decided) if decided else {}
        results = []
        for item in items:
            if item.error is not None:
                results.append(
                    broker_pb2.BulkVerifyResult(
                        request_id=item.request_id, error=Status.FromString(item.error)
                    )
                )
                continue
            stored = replies.get(item.request_id)
            if stored is None:  # purged from the ledger before the job expired
                gone = NotFound(
                    f"the answer to {item.request_id!r} is no longer kept",
                    resource_type="onceonly.v1.StoredReply",
                    resource_name=item.request_id,
                    description="purged",
                    reason="RESULT_PURGED",
                )
                results.append(
                    broker_pb2.BulkVerifyResult(request_id=item.request_id, error=status_for(gone))
                )
                continue
            try:
                result = idempotency.stored_result(stored)
            except Exception as exc:  # a denial, as Verify would have said it
                results.append(broker_pb2.BulkVerifyResult(request_id=item.request_id, error=status_for(exc)))
                continue
            response = translate.verify_response(
                result.request_id, result.trace_id, result.outcomes, result.decided_at
            )
            results.append(broker_pb2.BulkVerifyResult(request_id=item.request_id, response=response))
        return results

    async def decide_job_subject(
        self, header: broker_pb2.BulkHeader, item: broker_pb2.BulkSubject, identified: str
    ) -> broker_pb2.BulkVerifyResult:
        """One subject of an asynchronous job, as ``VerifyBulk`` decides it."""
        return await self._bulk_one(
            _template(header), item, OfficerIdentification(identified), wait_for_deferred_s=self._job_wait_s
        )

    async def _bulk_one(
        self,
        template: broker_pb2.VerifyRequest,
        item: broker_pb2.BulkSubject,
        identified: OfficerIdentification,
        *,
        wait_for_deferred_s: float | None = None,
    ) -> broker_pb2.BulkVerifyResult:
        request = broker_pb2.VerifyRequest()
        request.CopyFrom(template)
        request.request_id = item.request_id
        request.subject.CopyFrom(item.subject)
        try:
            domain_request = translate.identified(
                translate.verification_request(request, self._service.catalog), identified
            )
            result = await self._service.verify(domain_request, wait_for_deferred_s=wait_for_deferred_s)
        except Exception as exc:  # each subject's failure is its own result, not the stream's
            status = status_for(exc)
            if status.code == code_pb2.INTERNAL:
                log.error("unexpected error in bulk verification", exc_info=exc)
            return broker_pb2.BulkVerifyResult(request_id=item.request_id, error=status)
        response = translate.verify_response(
            result.request_id, result.trace_id, result.outcomes, result.decided_at
        )
        return broker_pb2.BulkVerifyResult(request_id=item.request_id, response=response)

    async def GetCatalog(self, request: broker_pb2.GetCatalogRequest, context: Context) -> broker_pb2.Catalog:
        principal = current_principal()
        uses = (
            self._service.allowed_uses(principal.organization_id)
            if principal is not None and principal.kind == "consumer"
            else {}
        )
        if not uses and not request.allowed_only:
            return self._catalog
        scoped = broker_pb2.Catalog()
        scoped.CopyFrom(self._catalog)
        del scoped.certificate_types[:]
        for cert in self._catalog.certificate_types:
            allowed = uses.get(cert.id, [])
            if request.allowed_only and not allowed:
                continue
            entry = scoped.certificate_types.add()
            entry.CopyFrom(cert)
            entry.allowed.extend(
                broker_pb2.AllowedUse(
                    agreement_id=u.agreement_id,
                    agreement_version=u.agreement_version,
                    procedure_code=u.procedure_code,
                    legal_bases=[LEGAL_BASIS_KIND.to_proto(k) for k in u.legal_bases],
                )
                for u in allowed
            )
        return scoped

    async def GetJwks(self, request: broker_pb2.GetJwksRequest, context: Context) -> broker_pb2.Jwks:
        return broker_pb2.Jwks(json=json.dumps(self._keys.jwks()))
