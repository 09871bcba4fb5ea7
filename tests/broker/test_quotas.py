"""Quota counters in the database: minute and day windows, nothing counted when a cap is reached,
and the cap held exactly by concurrent takers (several broker processes or replicas)."""

from __future__ import annotations

import asyncio
import datetime as dt

from onceonly.broker.quotas import SqlQuotas
from onceonly.broker.storage import create_engine, init_schema

NOON = dt.datetime(2026, 11, 30, 12, 0, 10, tzinfo=dt.UTC)


async def test_minute_and_day_windows(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        init_schema(engine)
        quotas = SqlQuotas(engine)
        take = lambda at: quotas.take("m", "L01280796", 2, 3, at)  # noqa: E731
        assert await take(NOON) is None and await take(NOON) is None
        breach = await take(NOON + dt.timedelta(seconds=5))
        assert breach is not None and (breach.window, breach.cap, breach.retry_after_s) == ("minute", 2, 45.0)
        assert quotas.used("m", "L01280796", NOON) == {"minute": 2, "day": 2}, (
            "the refused one is not counted"
        )
        next_minute = NOON + dt.timedelta(minutes=1)
        assert await take(next_minute) is None
        breach = await take(next_minute)
        assert breach is not None and breach.window == "day" and breach.cap == 3
        assert quotas.used("m", "L01280796", next_minute) == {"minute": 1, "day": 3}
        assert await quotas.take("m", "E04990101", 2, 3, next_minute) is None, "each consumer has its own"
        tomorrow = NOON + dt.timedelta(days=1)
        assert await take(tomorrow) is None
        assert quotas.used("m", "L01280796", tomorrow) == {"minute": 1, "day": 1}
    finally:
        engine.dispose()


async def test_concurrent_takers_never_exceed_the_cap(database_url: str) -> None:
    engines = [create_engine(database_url) for _ in range(2)]  # two broker processes
    try:
        init_schema(engines[0])
        takers = [SqlQuotas(e) for e in engines]
        results = await asyncio.gather(*(takers[i % 2].take("m", "L01280796", 0, 7, NOON) for i in range(20)))
        assert sum(r is None for r in results) == 7
        assert takers[0].used("m", "L01280796", NOON)["day"] == 7
    finally:
        for e in engines:
            e.dispose()
