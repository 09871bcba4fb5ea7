"""The in-flight bound: counting, refusing, handing freed units to waiting bulk readers."""

from __future__ import annotations

import asyncio

import pytest
from google.rpc import code_pb2, error_details_pb2

from onceonly.broker.admission import AdmissionControl, Overloaded, overloaded_status


def test_units_are_taken_and_given_back() -> None:
    control = AdmissionControl(2)
    assert control.try_enter() and control.try_enter()
    assert not control.try_enter()
    assert control.rejected == 1 and control.in_flight == 2
    control.leave()
    assert control.try_enter()
    control.leave(2)
    assert control.in_flight == 0 and control.peak == 2


async def test_a_waiting_reader_gets_the_next_free_unit_before_new_calls() -> None:
    control = AdmissionControl(1)
    assert control.try_enter()
    waiting = asyncio.create_task(control.enter(5.0))
    await asyncio.sleep(0)
    control.leave()  # handed straight to the waiting reader
    await asyncio.wait_for(waiting, 1)
    assert control.in_flight == 1
    assert not control.try_enter()


async def test_a_reader_gives_up_after_its_budget() -> None:
    control = AdmissionControl(1)
    assert control.try_enter()
    with pytest.raises(Overloaded):
        await control.enter(0.05)
    assert control.in_flight == 1 and control.rejected == 1
    control.leave()
    assert control.try_enter()  # no stale waiter left behind


async def test_a_cancelled_reader_leaves_no_trace() -> None:
    control = AdmissionControl(1)
    assert control.try_enter()
    waiting = asyncio.create_task(control.enter(5.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    control.leave()
    assert control.in_flight == 0
    assert control.try_enter()


def test_the_refusal_says_overloaded_and_when_to_retry() -> None:
    status = overloaded_status(256, 0.25)
    assert status.code == code_pb2.RESOURCE_EXHAUSTED
    info, retry = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info) and status.details[1].Unpack(retry)
    assert info.reason == "OVERLOADED" and info.metadata["max_in_flight"] == "256"
    assert retry.retry_delay.ToMilliseconds() == 250


def test_a_limit_is_required() -> None:
    with pytest.raises(ValueError):
        AdmissionControl(0)
