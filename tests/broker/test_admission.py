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


async def test_one_organisations_bulk_streams_hold_at_most_their_share() -> None:
    control = AdmissionControl(8, org_share=0.5, bulk_wait_s=1.0)
    for _ in range(4):
        await control.enter(1.0, "madrid")
    assert control.held["madrid"] == 4 == control.org_limit
    # Madrid's fifth subject waits although half the broker is free; others are not held up.
    fifth = asyncio.create_task(control.enter(1.0, "madrid"))
    await asyncio.sleep(0.01)
    assert not fifth.done()
    assert control.try_enter()  # an ordinary call of anyone
    await control.enter(1.0, "barcelona")
    assert control.in_flight == 6
    # When Madrid gives a unit back, its waiting subject takes it.
    control.leave(1, "madrid")
    await asyncio.wait_for(fifth, 1)
    assert control.held == {"madrid": 4, "barcelona": 1} and control.in_flight == 6


async def test_a_waiting_subject_over_its_share_does_not_block_ordinary_calls() -> None:
    control = AdmissionControl(4, org_share=0.5, bulk_wait_s=1.0)
    await control.enter(1.0, "madrid")
    await control.enter(1.0, "madrid")
    waiting = asyncio.create_task(control.enter(0.2, "madrid"))
    await asyncio.sleep(0.01)
    assert control.has_room() and control.try_enter()
    with pytest.raises(Overloaded):
        await waiting


def test_a_share_must_be_a_fraction() -> None:
    for share in (0, -0.5, 1.5):
        with pytest.raises(ValueError):
            AdmissionControl(8, org_share=share)
