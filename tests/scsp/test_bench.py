"""``make bench``'s SCSP comparison runs end to end (a few requests; no timing is asserted)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench import scsp as bench_scsp
from tests.conftest import Platform, session_pki
from tests.scsp.conftest import Scsp

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


async def test_the_comparison_sends_both_kinds_and_counts_every_answer(
    platform: Platform, scsp: Scsp
) -> None:
    result = await asyncio.to_thread(
        bench_scsp.compare,
        grpc_target=scsp.app.target,
        scsp_url=scsp.url,
        pki_dir=session_pki().dir,
        broker_cpu=time.process_time,
        requests=12,
        rounds=2,
        threads=2,
    )
    assert result["failed"] == 0
    assert [p["ok"] for p in result["phases"]["grpc"]] == [12, 12]
    assert [p["ok"] for p in result["phases"]["scsp"]] == [12, 12]
    # warm-up, then two rounds: 36 of each kind, each traced once
    traced = platform.trace_rows()
    assert len(traced) == 72
    assert len({r["request_id"] for r in traced}) == 72
    assert result["scsp_overhead_us_per_request"] == pytest.approx(
        result["scsp_cpu_us_median"] - result["grpc_cpu_us_median"], abs=0.2
    )
