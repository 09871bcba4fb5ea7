"""The benchmark's CPU breakdown charges each py-spy sample to the right component of a request."""

from __future__ import annotations

from pathlib import Path

from bench.profile import TRANSPORT, component_of, per_request, summarise

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


def test_shares_become_microseconds_per_request(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        f"{';'.join(stack('_run (onceonly/broker/ledger.py:300)'))} 30\n"
        f"{SERVE} 60\n"
        f"{';'.join(stack('evaluate (onceonly/broker/policy.py:10)'))} 10\n"
    )
    summary = summarise(raw)
    assert summary["samples"] == 100
    assert dict(per_request(summary, 2000.0)) == {TRANSPORT: 1200.0, "trace ledger": 600.0, "policy": 200.0}


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
