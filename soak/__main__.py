"""``make soak``: a bounded soak of the whole platform under a mixed workload and provider faults.

    python -m soak [--duration 180] [--concurrency 16] [--restart-every 15] [--slow tax --slow-ms 250]

Starts the three reference providers and the broker as separate processes (``onceonly serve``,
mutual TLS everywhere, a fresh var dir with an embedded SQLite ledger under
``var/soak/run-<timestamp>``), then for ``--duration`` seconds runs a mixed workload —
valid verifications, requests refused by policy, malformed requests and ``VerifyBulk``
streams — while a chaos task restarts one provider after another (alternately SIGTERM and
SIGKILL, down for a moment, back on the same address) and one provider answers every check
``--slow-ms`` late (``onceonly serve provider --delay-ms``).

At the end the broker is stopped with SIGTERM and every answer the client received (a
response, or a policy refusal — both carry a trace id) is looked up in the ledger:

* ``sent`` — verifications asked (each ``Verify`` call, each bulk subject);
* ``answered`` — answers received that carry a trace id;
* ``errors_by_code`` — every other ending, by gRPC status code (malformed requests end
  ``INVALID_ARGUMENT``; refusals by policy are counted as ``PERMISSION_DENIED`` here too);
* ``traced`` — answers whose trace record is in the ledger;
* ``lost`` — answers without a trace record: must be 0.

Also ``onceonly ledger verify`` on the result, check outcomes by status, latency, the
circuit-breaker state changes and overload refusals logged by the broker. Writes
``var/soak/latest.json``, prints the same, and exits 1 if anything was lost, the ledger does
not verify, or the harness itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from onceonly.broker.config import default_database_path
from onceonly.pki import DEMO_CONSUMER, ClientTls, init_pki
from onceonly.processes import Process, free_port, onceonly_argv, spawn, stop_all, wait_serving
from onceonly.v1 import broker_pb2, broker_pb2_grpc, common_pb2
from onceonly.wire import CHECK_STATUS, DOCUMENT_TYPE

REPO = Path(__file__).resolve().parent.parent
PROVIDERS = ("registry", "tax", "employment")
ORG = DEMO_CONSUMER[0]
CHECKS: tuple[tuple[str, dict[str, str]], ...] = (
    ("registry.residence/v1", {"municipality_code": "28079"}),
    ("tax.compliance/v1", {}),
    ("tax.income-below-threshold/v1", {"threshold_eur": "18000"}),
    ("employment.unemployment-status/v1", {}),
)
MIX = (("valid", 60), ("denied", 15), ("malformed", 10), ("bulk", 15))
BULK_SUBJECTS = 20


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=float(os.environ.get("SOAK_DURATION", 180)))
    p.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    p.add_argument("--restart-every", type=float, default=15.0, help="seconds between provider restarts")
    p.add_argument("--down-s", type=float, default=1.5, help="how long a restarted provider stays down")
    p.add_argument("--slow", choices=PROVIDERS, default="tax", help="the provider that is slowed")
    p.add_argument("--slow-ms", type=int, default=250, help="its delay per check")
    p.add_argument("--max-in-flight", type=int, default=0, help="ONCEONLY_MAX_IN_FLIGHT (0: the default)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the workload mix")
    p.add_argument("--out", type=Path, default=REPO / "var" / "soak")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- the workload


@dataclass
class Tally:
    sent: int = 0
    answered: dict[str, str] = field(default_factory=dict)
    """request id → trace id of every answer received."""
    errors_by_code: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)

    def response(self, response: broker_pb2.VerifyResponse) -> None:
        self.answered[response.request_id] = response.trace_id
        for o in response.outcomes:
            self.outcomes[CHECK_STATUS.name(o.status)] += 1

    def error(self, request_id: str, code_name: str, trace_id: str) -> None:
        self.errors_by_code[code_name] += 1
        if trace_id:  # a refusal by policy is an answer, traced like any other
            self.answered[request_id] = trace_id


def _trace_id_of_status(status: Any) -> str:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.metadata.get("trace_id", "")
    return ""


class Workload:
    def __init__(self, stub: broker_pb2_grpc.BrokerAsyncStub, tally: Tally, seed: int) -> None:
        from onceonly.providers.synthetic import population

        self.stub = stub
        self.tally = tally
        self.random = random.Random(seed)
        self.people = [
            r for r in population() if r.known_to_registry and r.known_to_tax and r.known_to_employment
        ][:500]
        self.stop = asyncio.Event()
        self._n = 0

    def _request(self, procedure: str = "HOUSING-RENT-SUBSIDY") -> broker_pb2.VerifyRequest:
        self._n += 1
        r = self.random.choice(self.people)
        return broker_pb2.VerifyRequest(
            request_id=f"soak-{os.getpid()}-{self._n}",
            consumer=common_pb2.Consumer(organization_id=ORG, unit="Housing subsidies", officer_id="soak"),
            purpose=common_pb2.Purpose(
                procedure_code=procedure,
                purpose_text="Rent subsidy application (soak)",
                case_file_id="SOAK-1",
            ),
            legal_basis=common_pb2.LegalBasis(
                kind=common_pb2.LEGAL_BASIS_KIND_LAW, reference="Ley 39/2015 art. 28"
            ),
            subject=common_pb2.Subject(
                document_type=DOCUMENT_TYPE.number(r.document_type), document_number=r.document_number
            ),
            checks=[broker_pb2.Check(certificate_type_id=c, parameters=p) for c, p in CHECKS],
        )

    async def worker(self) -> None:
        kinds = [k for k, _ in MIX]
        weights = [w for _, w in MIX]
        while not self.stop.is_set():
            kind = self.random.choices(kinds, weights)[0]
            self.tally.kinds[kind] += 1
            if kind == "bulk":
                await self.bulk()
                continue
            request = self._request("PARKING-PERMIT" if kind == "denied" else "HOUSING-RENT-SUBSIDY")
            if kind == "malformed":
                request.subject.document_number = request.subject.document_number[:-1] + "?"
            await self.unary(request)

    async def unary(self, request: broker_pb2.VerifyRequest) -> None:
        self.tally.sent += 1
        started = time.perf_counter()
        try:
            response = await self.stub.Verify(request, timeout=10)
        except grpc.aio.AioRpcError as exc:
            status = rpc_status.from_call(exc)  # type: ignore[arg-type]
            trace_id = _trace_id_of_status(status) if status is not None else ""
            self.tally.error(request.request_id, exc.code().name, trace_id)
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                await asyncio.sleep(0.1)  # back off as a well-behaved client would
        else:
            self.tally.response(response)
        self.tally.latencies_ms.append((time.perf_counter() - started) * 1000)

    async def bulk(self) -> None:
        template = self._request()
        header = broker_pb2.BulkHeader(
            consumer=template.consumer,
            purpose=template.purpose,
            legal_basis=template.legal_basis,
            checks=template.checks,
            window=8,
        )
        items = [self._request() for _ in range(BULK_SUBJECTS)]
        self.tally.sent += len(items)

        async def requests() -> Any:
            yield broker_pb2.BulkVerifyRequest(header=header)
            for item in items:
                yield broker_pb2.BulkVerifyRequest(
                    subject=broker_pb2.BulkSubject(request_id=item.request_id, subject=item.subject)
                )

        seen: set[str] = set()
        try:
            async for result in self.stub.VerifyBulk(requests(), timeout=60):
                seen.add(result.request_id)
                if result.HasField("response"):
                    self.tally.response(result.response)
                else:
                    self.tally.error(
                        result.request_id, code_name(result.error.code), _trace_id_of_status(result.error)
                    )
        except grpc.aio.AioRpcError as exc:
            # Subjects without a result ended with the stream (a client would resume them).
            missing = len(items) - len(seen)
            self.tally.errors_by_code[exc.code().name] += missing
            await asyncio.sleep(0.1)


def code_name(number: int) -> str:
    """The name of a gRPC status code given by number (as in a ``google.rpc.Status``)."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.name
    return f"CODE_{number}"


# --------------------------------------------------------------------------- processes


@dataclass
class Platform:
    run_dir: Path
    pki: Path
    env: dict[str, str]
    args: argparse.Namespace
    providers: dict[str, Process] = field(default_factory=dict)
    broker: Process | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def event(self, what: str, **details: Any) -> None:
        self.events.append({"t_s": round(time.monotonic() - self.t0, 2), "event": what, **details})
        print(f"  [{self.events[-1]['t_s']:7.1f}s] {what} {details or ''}", flush=True)

    def provider_args(self, name: str, target: str) -> list[str]:
        argv = ["serve", "provider", name, "--listen", target, "--tls-dir", str(self.pki)]
        if name == self.args.slow and self.args.slow_ms:
            argv += ["--delay-ms", str(self.args.slow_ms)]
        return argv

    async def start_provider(self, name: str, target: str, restart: int = 0) -> None:
        log_dir = self.run_dir / "logs"
        label = f"{name}-{restart}" if restart else name
        process = spawn(label, self.provider_args(name, target), log_dir, target, self.env)
        self.providers[name] = process
        await wait_serving(process, 30, tls=ClientTls.from_dir(self.pki, "broker"))

    async def start(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        for name in PROVIDERS:
            await self.start_provider(name, f"127.0.0.1:{free_port()}")
        target = f"127.0.0.1:{free_port()}"
        seed = resources.files("onceonly.broker").joinpath("data/agreements.toml")
        argv = [
            "serve",
            "broker",
            "--listen",
            target,
            "--var-dir",
            str(self.run_dir),
            "--tls-dir",
            str(self.pki),
            "--seed-agreements",
            str(seed),
        ]
        for name, p in self.providers.items():
            argv += ["--provider", f"{name}={p.target}"]
        self.broker = spawn("broker", argv, self.run_dir / "logs", target, self.env)
        await wait_serving(self.broker, 30, tls=ClientTls.from_dir(self.pki, "broker"))

    async def chaos(self, stop: asyncio.Event) -> None:
        """Restart one provider after another: SIGTERM, then SIGKILL, and so on."""
        n = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.args.restart_every)
                return
            name = PROVIDERS[n % len(PROVIDERS)]
            sig = signal.SIGTERM if n % 2 == 0 else signal.SIGKILL
            n += 1
            process = self.providers[name]
            self.event("provider down", provider=name, signal=sig.name)
            process.popen.send_signal(sig)
            await asyncio.to_thread(process.popen.wait, 30)
            await asyncio.sleep(self.args.down_s)
            await self.start_provider(name, process.target, restart=n)
            self.event("provider back", provider=name)

    def all_processes(self) -> list[Process]:
        return [p for p in (self.broker, *self.providers.values()) if p is not None]


# --------------------------------------------------------------------------- the run


def traced_among(run_dir: Path, trace_ids: set[str]) -> set[str]:
    import sqlalchemy as sa

    from onceonly.broker.storage import create_engine, default_database_url

    engine = create_engine(default_database_url(run_dir))
    found: set[str] = set()
    try:
        with engine.connect() as conn:
            for tid in conn.execute(sa.text("SELECT trace_id FROM trace_records")).scalars():
                if tid in trace_ids:
                    found.add(tid)
    finally:
        engine.dispose()
    return found


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def log_counts(platform: Platform) -> dict[str, Any]:
    assert platform.broker is not None
    breaker: Counter[str] = Counter()
    shed = 0
    for line in platform.broker.log_path.read_text(errors="replace").splitlines():
        if "provider circuit state changed" in line:
            try:
                record = json.loads(line)
                breaker[
                    f"{record.get('provider')}:{record.get('previous_state')}->{record.get('state')}"
                ] += 1
            except ValueError:
                breaker["unparsed"] += 1
        elif "shedding load" in line:
            shed += 1
    return {"breaker_state_changes": dict(sorted(breaker.items())), "shedding_log_lines": shed}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for old in sorted(args.out.glob("run-*"))[:-2]:  # keep the two latest runs' state and logs
        shutil.rmtree(old, ignore_errors=True)
    run_dir = (args.out / f"run-{stamp}").resolve()
    pki_dir = run_dir / "pki"
    init_pki(pki_dir, providers=PROVIDERS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env.update({"ONCEONLY_LOG_FORMAT": "json", "PYTHONPATH": str(REPO)})
    if args.max_in_flight:
        env["ONCEONLY_MAX_IN_FLIGHT"] = str(args.max_in_flight)
    platform = Platform(run_dir, pki_dir, env, args)
    print(
        f"soak: {args.duration:.0f}s, {args.concurrency} clients, {args.slow} slowed by {args.slow_ms} ms, "
        f"a provider restarted every {args.restart_every:.0f}s; state in {run_dir}",
        flush=True,
    )
    tally = Tally()
    harness_error = ""
    broker_exit: int | None = None
    try:
        await platform.start()
        platform.event("platform up")
        assert platform.broker is not None
        tls = ClientTls.from_dir(pki_dir, DEMO_CONSUMER[1])
        async with grpc.aio.secure_channel(platform.broker.target, tls.channel_credentials()) as channel:
            workload = Workload(broker_pb2_grpc.BrokerStub(channel), tally, args.seed)
            workers = [asyncio.create_task(workload.worker()) for _ in range(args.concurrency)]
            chaos = asyncio.create_task(platform.chaos(workload.stop))
            await asyncio.sleep(args.duration)
            workload.stop.set()
            platform.event("load stopping")
            await asyncio.wait_for(asyncio.gather(*workers, chaos), 90)
        platform.event("broker SIGTERM")
        platform.broker.popen.send_signal(signal.SIGTERM)
        broker_exit = await asyncio.to_thread(platform.broker.popen.wait, 30)
    except Exception as exc:  # the harness failed: report it, still count what was received
        harness_error = f"{type(exc).__name__}: {exc}"
        print(f"soak: harness failed: {harness_error}", file=sys.stderr)
    finally:
        problems = stop_all(platform.all_processes())
    received = set(tally.answered.values())
    traced = traced_among(run_dir, received) if default_database_path(run_dir).exists() else set()
    verify = subprocess.run(
        onceonly_argv("ledger", "verify", "--var-dir", str(run_dir), "--json"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    ledger: dict[str, Any] = {"exit_code": verify.returncode}
    with contextlib.suppress(ValueError):
        report = json.loads(verify.stdout)
        ledger["intact"] = report["intact"]
        ledger["records"] = sum(c["records"] for c in report["chains"])
    lat = tally.latencies_ms
    result: dict[str, Any] = {
        "started_at": stamp,
        "duration_s": args.duration,
        "concurrency": args.concurrency,
        "slowed": {"provider": args.slow, "delay_ms": args.slow_ms},
        "restart_every_s": args.restart_every,
        "sent": tally.sent,
        "answered": len(tally.answered),
        "errors_by_code": dict(sorted(tally.errors_by_code.items())),
        "traced": len(traced),
        "lost": len(received - traced),
        "requests_by_kind": dict(sorted(tally.kinds.items())),
        "check_outcomes": dict(sorted(tally.outcomes.items())),
        "unary_latency_ms": {
            "p50": percentile(lat, 0.50),
            "p99": percentile(lat, 0.99),
            "max": round(max(lat), 1) if lat else None,
        },
        "ledger_verify": ledger,
        "broker_exit_code": broker_exit,
        **(log_counts(platform) if platform.broker is not None else {}),
        "events": platform.events,
        "harness_error": harness_error or None,
        "process_problems": problems,
        "run_dir": str(run_dir),
    }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2)
    (args.out / "latest.json").write_text(text + "\n")
    (Path(result["run_dir"]) / "result.json").write_text(text + "\n")
    print(text)
    ok = (
        result["lost"] == 0
        and result["ledger_verify"].get("intact") is True
        and not result["harness_error"]
        and result["answered"] > 0
    )
    print(
        f"soak {'PASSED' if ok else 'FAILED'}: sent {result['sent']}, answered {result['answered']}, "
        f"traced {result['traced']}, lost {result['lost']}, ledger "
        f"{'intact' if result['ledger_verify'].get('intact') else 'NOT VERIFIED'}"
        f" -> {args.out / 'latest.json'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
