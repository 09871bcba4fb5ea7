"""The practical limit of the design: a bare grpc.aio relay over three echo servers.

    python -m bench.baseline echo --listen 127.0.0.1:PORT [--claim compliant] [--tls-dir DIR --name tax]
    python -m bench.baseline relay --listen 127.0.0.1:PORT --upstream A --upstream B --upstream C \
        [--tls-dir DIR]

The echo servers implement ``Provider.Attest`` by returning a fixed small ``AttestResponse``
(a one-claim Struct, like the reference providers). The relay implements ``Broker.Verify``:
for each request it calls ``Attest`` on the three echo servers in parallel over reused
channels and returns a ``VerifyResponse`` with three VERIFIED outcomes, each carrying the
echoed claims and a fixed attestation string as long as a real compact JWS. No validation,
no policy, no signing, no ledger. Both run on uvloop, with health and reflection, served
exactly like the real servers (:mod:`onceonly.serving`), each in its own process, and with
``--tls-dir`` they use mutual TLS with the certificates of ``onceonly pki init`` as the real
ones do (the relay serves and calls with the broker's certificate).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

import grpc
from google.protobuf import struct_pb2

from onceonly.pki import ClientTls, TlsConfig
from onceonly.serving import install_event_loop_policy, run_until_signal, start_server
from onceonly.v1 import broker_pb2, broker_pb2_grpc, provider_pb2, provider_pb2_grpc

# Length of a real attestation (EdDSA compact JWS with the documented payload), measured on
# the reference broker; the relay returns a fixed string of this size so messages compare.
ATTESTATION_CHARS = 1100
PROVIDER_IDS = ("registry", "tax", "employment")

CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


class Echo(provider_pb2_grpc.ProviderServicer):
    def __init__(self, claim: str) -> None:
        claims = struct_pb2.Struct()
        claims[claim] = True
        self._reply = provider_pb2.AttestResponse(
            result=provider_pb2.AttestResponse.RESULT_FOUND, claims=claims
        )

    async def Attest(self, request: provider_pb2.AttestRequest, context: grpc.aio.ServicerContext):
        return self._reply


class Relay(broker_pb2_grpc.BrokerServicer):
    def __init__(self, upstreams: list[str], tls_dir: Path | None) -> None:
        if tls_dir is None:
            self._channels = [grpc.aio.insecure_channel(u, options=CHANNEL_OPTIONS) for u in upstreams]
        else:
            creds = ClientTls.from_dir(tls_dir, "broker").channel_credentials()
            self._channels = [grpc.aio.secure_channel(u, creds, options=CHANNEL_OPTIONS) for u in upstreams]
        self._stubs = [provider_pb2_grpc.ProviderStub(c) for c in self._channels]
        self._attestation = "x" * ATTESTATION_CHARS

    async def _attest(self, i: int, request: broker_pb2.VerifyRequest, check: broker_pb2.Check):
        stub = self._stubs[i % len(self._stubs)]
        started = time.perf_counter()
        reply = await stub.Attest(
            provider_pb2.AttestRequest(
                request_id=request.request_id,
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

    async def Verify(self, request: broker_pb2.VerifyRequest, context: grpc.aio.ServicerContext):
        replies = await asyncio.gather(*(self._attest(i, request, c) for i, c in enumerate(request.checks)))
        response = broker_pb2.VerifyResponse(request_id=request.request_id, trace_id=uuid.uuid4().hex)
        for i, (check, (reply, latency_ms)) in enumerate(zip(request.checks, replies, strict=True)):
            response.outcomes.add(
                certificate_type_id=check.certificate_type_id,
                provider_id=PROVIDER_IDS[i % len(PROVIDER_IDS)],
                status=broker_pb2.CHECK_STATUS_VERIFIED,
                claims=reply.claims,
                attestation=self._attestation,
                latency_ms=latency_ms,
            )
        response.decided_at.GetCurrentTime()
        return response

    async def close(self) -> None:
        for c in self._channels:
            await c.close()


async def serve_echo(listen: str, claim: str, tls_dir: Path | None, name: str) -> None:
    echo = Echo(claim)  # type: ignore[abstract]  # serves only Attest
    running = await start_server(
        listen,
        [lambda s: provider_pb2_grpc.add_ProviderServicer_to_server(echo, s)],
        [provider_pb2.DESCRIPTOR.services_by_name["Provider"].full_name],
        tls=TlsConfig.from_dir(tls_dir, name) if tls_dir else None,
    )
    await run_until_signal(running, grace=1.0)


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
    sub = parser.add_subparsers(dest="role", required=True)
    echo = sub.add_parser("echo")
    echo.add_argument("--listen", required=True)
    echo.add_argument("--claim", default="compliant")
    echo.add_argument("--tls-dir", type=Path)
    echo.add_argument("--name", default="tax", help="certificate name in --tls-dir")
    relay = sub.add_parser("relay")
    relay.add_argument("--listen", required=True)
    relay.add_argument("--upstream", action="append", required=True)
    relay.add_argument("--tls-dir", type=Path)
    args = parser.parse_args(argv)
    install_event_loop_policy()
    if args.role == "echo":
        asyncio.run(serve_echo(args.listen, args.claim, args.tls_dir, args.name))
    else:
        asyncio.run(serve_relay(args.listen, args.upstream, args.tls_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
