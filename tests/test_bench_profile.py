"""The benchmark's CPU breakdown charges each py-spy sample to the right component of a request."""

from __future__ import annotations

from pathlib import Path

from bench.profile import TRANSPORT, breakdown, component_of

SERVE = "main (onceonly/__main__.py:5);run (asyncio/runners.py:118)"


def stack(*frames: str) -> list[str]:
    return [*SERVE.split(";"), *frames]


def test_library_time_lands_on_its_caller() -> None:
    # A SQLite commit under SQLAlchemy is the ledger's; a JWS made by our helper is the attestation's.
    assert (
        component_of(
            stack("_transaction (onceonly/broker/ledger.py:420)", "commit (sqlalchemy/engine/base.py:9)")
        )
        == "trace ledger"
    )
    assert (
        component_of(stack("sign (onceonly/broker/attestation.py:80)", "sign (onceonly/jose.py:40)"))
        == "attestations"
    )
    assert (
        component_of(
            stack("check (onceonly/evidence.py:99)", "verify (onceonly/jose.py:70)", "b64 (base64.py:1)")
        )
        == "provider evidence"
    )


def test_grpc_and_the_event_loop_are_transport_even_under_our_frames() -> None:
    assert component_of(
        stack("attest (onceonly/broker/providers.py:50)", "__init__ (grpc/aio/_call.py:300)")
    ) == (TRANSPORT)
    assert component_of(SERVE.split(";")) == TRANSPORT  # uvloop and the gRPC core in C
    assert component_of(stack("Verify (onceonly/broker/grpc_api.py:10)")) == "service glue"


def test_each_threads_measured_cpu_is_divided_as_its_samples(tmp_path: Path) -> None:
    """The event loop's CPU splits by its samples; the ledger writer's is the ledger's; a thread
    with no Python code (the gRPC core) is transport. The parts add up to the CPU per request."""
    raw = tmp_path / "profile.txt"
    loop, writer = "thread (100): MainThread", "thread (101): trace-ledger-writer"
    raw.write_text(
        f"{loop};{';'.join(stack('evaluate (onceonly/broker/policy.py:10)'))} 25\n"
        f"{loop};{SERVE} 75\n"
        f"{writer};_bootstrap (threading.py:1);_run (onceonly/broker/ledger.py:300) 40\n"
    )
    # 200 requests: the loop used 0.4 s (2,000 us each), the writer 0.1 s, a gRPC thread 0.02 s.
    found = breakdown(raw, {100: 0.4, 101: 0.1, 102: 0.02}, requests=200)
    assert dict(found["components_us_per_request"]) == {
        TRANSPORT: 1500.0 + 100.0,
        "policy": 500.0,
        "trace ledger": 500.0,
    }
    assert found["cpu_us_per_request"] == 2600.0
    assert [t["name"] for t in found["threads"]] == [
        "MainThread",
        "trace-ledger-writer",
        "(no Python code: the gRPC core)",
    ]


def test_the_capacity_sweep_brackets_then_bisects() -> None:
    """A server whose p99 crosses 10 ms at 450/s: doubling finds 400 met and 800 missed, then four
    bisections close in on 450; the failed calls of a probe make it miss whatever its latency."""
    from bench.run import capacity

    def measure_at(rate: float) -> dict[str, object]:
        p99 = 5.0 if rate <= 450 else 50.0
        return {
            "latency_from_schedule_ms": {"p50": 2.0, "p99": p99},
            "error_count": 0,
            "invalid": 0,
            "front_cpu_us_per_request": 1000.0,
        }

    found = capacity(measure_at, start=100, steps=4, objective_ms=10)
    assert [p["rate"] for p in found["probes"]] == [100, 200, 400, 800, 600, 500, 450, 475]
    assert found["capacity_rps"] == 450 and found["first_miss_rps"] == 475

    failing = capacity(
        lambda rate: {**measure_at(rate), "error_count": 1}, start=100, steps=2, objective_ms=10
    )
    assert failing["capacity_rps"] == 0 and failing["probes"][0]["meets"] is False


def test_a_front_server_of_several_processes_counts_them_all() -> None:
    from bench.run import Servers

    servers = Servers([], {})
    cpu = {"broker": 1.0, "broker#2": 0.5, "broker-pg": 4.0, "relay": 2.0}
    assert servers.front_cpu(cpu, "broker") == 1.5
    assert servers.front_cpu(cpu, "broker-pg") == 4.0
    assert servers.front_cpu(cpu, "relay") == 2.0
