"""The Broker gRPC service: translates protobuf ⇄ domain; errors leave through :mod:`onceonly.status`.

Every failure ends the call through :func:`onceonly.status.abort` (a bulk subject's failure
becomes that subject's result through :func:`onceonly.status.status_for`): a status with
``google.rpc.ErrorInfo`` and the details of its kind. Nothing else reaches the caller: no stack
trace, no internal message.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from google.rpc import code_pb2

from onceonly.broker import translate
from onceonly.broker.attestation import KeyRing
from onceonly.broker.auth import authorise_consumer, current_principal, officer_identification
from onceonly.broker.domain import OfficerIdentification
from onceonly.broker.errors import FieldViolation, InvalidRequest, UnknownCertificateType
from onceonly.broker.service import VerificationService
from onceonly.grpc_types import Context
from onceonly.status import abort, status_for
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from onceonly.wire import LEGAL_BASIS_KIND

log = logging.getLogger(__name__)

BULK_DEFAULT_WINDOW = 64
BULK_MAX_WINDOW = 256
# A structurally valid stand-in subject, to validate a bulk header on its own.
_PLACEHOLDER_SUBJECT = common_pb2.Subject(
    document_type=common_pb2.DOCUMENT_TYPE_DNI, document_number="00000000T"
)
SERVICE_NAME = broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name


class BrokerServicer(broker_pb2_grpc.BrokerServicer):
    """gRPC face of :class:`VerificationService`."""

    def __init__(self, service: VerificationService, keys: KeyRing):
        self._service = service
        self._catalog = translate.catalog_message(service.catalog)
        self._keys = keys

    async def Verify(self, request: broker_pb2.VerifyRequest, context: Context) -> broker_pb2.VerifyResponse:
        try:
            domain_request = translate.verification_request(request, self._service.catalog)
            # The caller must be the consumer it names: checked after the (pure) field validation
            # and before the service runs, so a spoofed request is neither traced nor answered.
            refusal = authorise_consumer(
                request.consumer.organization_id, request.consumer.officer_id, "Verify"
            )
            if refusal is not None:
                raise refusal
            domain_request = translate.identified(domain_request, officer_identification())
            result = await self._service.verify(domain_request, deadline_s=context.time_remaining())
            return translate.verify_response(
                result.request_id, result.trace_id, result.outcomes, result.decided_at
            )
        except Exception as exc:  # every failure leaves through the one table
            await abort(context, exc)

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
        template = broker_pb2.VerifyRequest(
            consumer=header.consumer,
            purpose=header.purpose,
            legal_basis=header.legal_basis,
            checks=header.checks,
        )
        probe = broker_pb2.VerifyRequest()
        probe.CopyFrom(template)
        probe.request_id = "header"
        probe.subject.CopyFrom(_PLACEHOLDER_SUBJECT)
        try:
            translate.verification_request(probe, self._service.catalog)
        except InvalidRequest as exc:
            violations = [FieldViolation(f"header.{v.field}", v.description) for v in exc.violations]
            await abort(context, InvalidRequest(violations))
        except UnknownCertificateType as exc:
            await abort(context, UnknownCertificateType(exc.certificate_type_id, f"header.{exc.field}"))
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

    async def _bulk_one(
        self,
        template: broker_pb2.VerifyRequest,
        item: broker_pb2.BulkSubject,
        identified: OfficerIdentification,
    ) -> broker_pb2.BulkVerifyResult:
        request = broker_pb2.VerifyRequest()
        request.CopyFrom(template)
        request.request_id = item.request_id
        request.subject.CopyFrom(item.subject)
        try:
            domain_request = translate.identified(
                translate.verification_request(request, self._service.catalog), identified
            )
            result = await self._service.verify(domain_request)
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
