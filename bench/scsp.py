"""SCSP v3 against gRPC ``Verify`` on the same broker: what the XML and the signatures cost.

Both sides ask the same thing: one check (``tax.compliance/v1``) about one subject, under the same
procedure and law, from the same organisation, over TLS with client certificates. The SCSP side
sends petitions signed in advance (WS-Security, RSA-SHA256) so the load generator's signing is not
in the measure; the broker still verifies each signature and signs each answer. Phases alternate
(gRPC, SCSP, gRPC, …), each with the same number of client threads on keep-alive connections, and
the broker's own CPU is counted per request in each.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from bench import common
from onceonly.v1 import broker_pb2, broker_pb2_grpc

CHECK = common.DIRECT_CERTIFICATE_TYPE
SCSP_CODE = "ONCEONLY_CORRIENTE_AEAT"


def _petitions(pki_dir: Path, count: int, tag: str) -> list[bytes]:
    from onceonly.consumers import scsp
    from onceonly.pki import DEMO_CONSUMER, cert_path, key_path
    from onceonly.providers.synthetic import population
    from onceonly.scsp.wssecurity import Seal

    name = f"{DEMO_CONSUMER[1]}-seal"
    seal = Seal.from_pem(cert_path(pki_dir, name).read_bytes(), key_path(pki_dir, name).read_bytes())
    people = [r for r in population() if r.known_to_tax][:500]
    requester = scsp.Requester(
        unit=common.UNIT, procedure=common.PROCEDURE, purpose=common.PURPOSE_TEXT, case_file="EXP-BENCH-SCSP"
    )
    return [
        scsp.signed_envelope(
            scsp.peticion(
                f"{tag}{i:06d}"[-26:],
                SCSP_CODE,
                [(r.document_type, r.document_number)],
                requester=requester,
            ),
            seal,
        )
        for i, r in zip(range(count), itertools.cycle(people), strict=False)
    ]


def _verify_requests(count: int, tag: str) -> list[broker_pb2.VerifyRequest]:
    pool = common.subjects(limit=500)
    return [
        broker_pb2.VerifyRequest(
            request_id=f"{tag}-{i}",
            consumer=common.consumer(),
            purpose=common.purpose("EXP-BENCH-SCSP"),
            legal_basis=common.legal_basis(),
            subject=pool[i % len(pool)],
            checks=[broker_pb2.Check(certificate_type_id=CHECK)],
        )
        for i in range(count)
    ]


def _run(
    threads: int, work: Iterator[Any], call: Callable[[Any, Any], bool], connect: Callable[[], Any]
) -> dict[str, Any]:
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}

    def worker() -> None:
        connection = connect()
        try:
            while True:
                with lock:
                    item = next(work, None)
                if item is None:
                    return
                good = call(connection, item)
                with lock:
                    counts["ok" if good else "failed"] += 1
        finally:
            close = getattr(connection, "close", None)
            if close is not None:
                close()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    return {**counts, "elapsed_s": round(elapsed, 3), "rps": round(counts["ok"] / elapsed, 1)}


def compare(
    *,
    grpc_target: str,
    scsp_url: str,
    pki_dir: Path,
    broker_cpu: Callable[[], float],
    requests: int,
    rounds: int,
    threads: int,
) -> dict[str, Any]:
    """Alternate gRPC and SCSP phases of ``requests`` each; throughput, broker CPU per request."""
    import ssl

    from onceonly.pki import DEMO_CONSUMER, ClientTls

    tag = f"BS{uuid.uuid4().hex[:8].upper()}"
    signing_started = time.perf_counter()
    petitions = _petitions(pki_dir, requests * (rounds + 1), tag)
    signing_s = time.perf_counter() - signing_started
    verifies = _verify_requests(requests * (rounds + 1), tag)
    where = urlsplit(scsp_url)
    context = ssl.create_default_context(cafile=str(pki_dir / "ca.pem"))
    context.load_cert_chain(pki_dir / f"{DEMO_CONSUMER[1]}.pem", pki_dir / f"{DEMO_CONSUMER[1]}-key.pem")
    credentials = ClientTls.from_dir(pki_dir, DEMO_CONSUMER[1]).channel_credentials()

    def scsp_connect() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            where.hostname or "", where.port or 443, context=context, timeout=30
        )

    def scsp_call(connection: http.client.HTTPSConnection, body: bytes) -> bool:
        connection.request(
            "POST",
            where.path,
            body=body,
            headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '"peticionSincrona"'},
        )
        reply = connection.getresponse()
        data = reply.read()
        return reply.status == 200 and b"<res:CodigoEstado>0003</res:CodigoEstado>" in data

    class _Grpc:
        def __init__(self) -> None:
            self.channel = grpc.secure_channel(grpc_target, credentials)
            self.stub = broker_pb2_grpc.BrokerStub(self.channel)

        def close(self) -> None:
            self.channel.close()

    def grpc_call(connection: _Grpc, request: broker_pb2.VerifyRequest) -> bool:
        try:
            reply = connection.stub.Verify(request, timeout=30)
        except grpc.RpcError:
            return False
        return bool(reply.outcomes) and reply.outcomes[0].status == broker_pb2.CHECK_STATUS_VERIFIED

    sides: dict[str, tuple[Iterator[Any], Callable[[Any, Any], bool], Callable[[], Any]]] = {
        "grpc": (iter(verifies), grpc_call, _Grpc),
        "scsp": (iter(petitions), scsp_call, scsp_connect),
    }

    def phase(side: str, n: int) -> dict[str, Any]:
        work, call, connect = sides[side]
        before = broker_cpu()
        result = _run(threads, itertools.islice(work, n), call, connect)
        used = broker_cpu() - before
        result["broker_cpu_us_per_request"] = round(used / max(1, result["ok"]) * 1e6, 1)
        return result

    for side in sides:  # warm both paths up (connections, caches) with the first share
        phase(side, requests)
    phases: dict[str, list[dict[str, Any]]] = {"grpc": [], "scsp": []}
    for r in range(rounds):
        order = ("grpc", "scsp") if r % 2 == 0 else ("scsp", "grpc")
        for side in order:
            phases[side].append(phase(side, requests))

    def median(side: str, key: str) -> float:
        values = sorted(p[key] for p in phases[side])
        return values[len(values) // 2]

    grpc_cpu, scsp_cpu = (
        median("grpc", "broker_cpu_us_per_request"),
        median("scsp", "broker_cpu_us_per_request"),
    )
    return {
        "requests_per_phase": requests,
        "rounds": rounds,
        "threads": threads,
        "check": CHECK,
        "phases": phases,
        "grpc_rps_median": median("grpc", "rps"),
        "scsp_rps_median": median("scsp", "rps"),
        "grpc_cpu_us_median": grpc_cpu,
        "scsp_cpu_us_median": scsp_cpu,
        "scsp_overhead_us_per_request": round(scsp_cpu - grpc_cpu, 1),
        "throughput_ratio": round(median("scsp", "rps") / median("grpc", "rps"), 3),
        "client_signing_us_per_petition": round(signing_s / len(petitions) * 1e6, 1),
        "failed": sum(p["failed"] for side in phases.values() for p in side),
    }
