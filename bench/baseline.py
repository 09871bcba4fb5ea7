"""The bare limit of the design: a grpc.aio relay over the same providers as the broker.

    python -m bench.baseline --listen 127.0.0.1:PORT --upstream REGISTRY --upstream TAX \
        --upstream EMPLOYMENT [--tls-dir DIR]

The relay implements ``Broker.Verify``: for each request it calls ``Attest`` on the providers in
parallel over reused channels (the i-th check on the i-th upstream: the bench's request asks
the registry, the tax agency and the employment service in that order) and returns a
``VerifyResponse`` with each provider's claims and a fixed attestation string as long as a real
compact JWS. No validation, policy, evidence check, signing or ledger. The bench points it at the
very reference providers the broker uses, so that both pay the same providers and the
difference is the broker's own work. It runs on uvloop, with health and reflection, served
exactly like the real servers (:mod:`onceonly.serving`), in its own process; with ``--tls-dir``
it serves and calls with the broker's certificate of ``onceonly pki init``, over mutual TLS as
the broker does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import grpc

from onceonly.pki import ClientTls, TlsConfig
from onceonly.serving import install_event_loop_policy, run_until_signal, start_server
from onceonly.v1 import broker_pb2, broker_pb2_grpc, provider_pb2, provider_pb2_grpc

# Length of a real attestation (EdDSA compact JWS with the documented payload), measured on
# the reference broker; the relay returns a fixed string of this size so messages compare.
ATTESTATION_CHARS = 1100
PROVIDER_IDS = ("registry", "tax", "employment")
_STATUS = {
    provider_pb2.AttestResponse.RESULT_FOUND: broker_pb2.CHECK_STATUS_VERIFIED,
    provider_pb2.AttestResponse.RESULT_SUBJECT_NOT_FOUND: broker_pb2.CHECK_STATUS_SUBJECT_NOT_FOUND,
}

CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


class Relay(broker_pb2_grpc.BrokerServicer):
    def __init__(self, upstreams: list[str], tls_dir: Path | None) -> None:
        if tls_dir is None:
            self._channels = [grpc.aio.insecure_channel(u, options=CHANNEL_OPTIONS) for u in upstreams]
        else:
            creds = ClientTls.from_dir(tls_dir, "broker").channel_credentials()
            self._channels = [grpc.aio.secure_channel(u, creds, options=CHANNEL_OPTIONS) for u in upstreams]
        self._stubs = [provider_pb2_grpc.ProviderStub(c) for c in self._channels]
        self._attestation = "x" * ATTESTATION_CHARS

    async def _attest(
        self, i: int, trace_id: str, request: broker_pb2.VerifyRequest, check: broker_pb2.Check
    ) -> tuple[provider_pb2.AttestResponse, int]:
        stub = self._stubs[i % len(self._stubs)]
        started = time.perf_counter()
        reply = await stub.Attest(
            provider_pb2.AttestRequest(
                request_id=request.request_id,
                trace_id=trace_id,
                certificate_type_id=check.certificate_type_id,
                subject=request.subject,
                parameters=check.parameters,
                consumer_organization_id=request.consumer.organization_id,
                procedure_code=request.purpose.procedure_code,
                legal_basis_kind=request.legal_basis.kind,
            ),
            timeout=2.0,
        )
        return reply, int((time.perf_counter() - started) * 1000)

    async def Verify(
        self, request: broker_pb2.VerifyRequest, context: grpc.aio.ServicerContext
    ) -> broker_pb2.VerifyResponse:
        trace_id = uuid.uuid4().hex
        replies = await asyncio.gather(
            *(self._attest(i, trace_id, request, c) for i, c in enumerate(request.checks))
        )
        response = broker_pb2.VerifyResponse(request_id=request.request_id, trace_id=trace_id)
        for i, (check, (reply, latency_ms)) in enumerate(zip(request.checks, replies, strict=True)):
            response.outcomes.add(
                certificate_type_id=check.certificate_type_id,
                provider_id=PROVIDER_IDS[i % len(PROVIDER_IDS)],
                status=_STATUS.get(reply.result, broker_pb2.CHECK_STATUS_ERROR),
                claims=reply.claims,
                attestation=self._attestation,
                latency_ms=latency_ms,
            )
        response.decided_at.GetCurrentTime()
        return response

    async def close(self) -> None:
        for c in self._channels:
            await c.close()


async def serve_relay(listen: str, upstreams: list[str], tls_dir: Path | None) -> None:
    relay = Relay(upstreams, tls_dir)  # type: ignore[abstract]  # serves only Verify
    running = await start_server(
        listen,
        [lambda s: broker_pb2_grpc.add_BrokerServicer_to_server(relay, s)],
        [broker_pb2.DESCRIPTOR.services_by_name["Broker"].full_name],
        tls=TlsConfig.from_dir(tls_dir, "broker") if tls_dir else None,
    )
    running.on_stop.append(relay.close)
    await run_until_signal(running, grace=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", action="append", required=True, help="a provider, in check order")
    parser.add_argument("--tls-dir", type=Path)
    args = parser.parse_args(argv)
    install_event_loop_policy()
    asyncio.run(serve_relay(args.listen, args.upstream, args.tls_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
