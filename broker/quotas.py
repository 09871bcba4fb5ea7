"""Quotas: a master agreement's cap on each consumer's requests per minute and per day.

Counters live in the database (``quota_counters``), so every broker process and replica counts
against the same cap. Taking a request's share is one transaction: for each capped window the
counter of the current window is created or incremented only while it is below the cap; when one
is at its cap nothing is counted and the request is refused (``QUOTA_EXCEEDED``).
Windows are UTC calendar minutes and days; counters of windows that ended are deleted as new ones
start.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import sqlalchemy as sa

from onceonly.broker.domain import QuotaBreach
from onceonly.broker.storage import QuotaCounterRow, create_engine

__all__ = ["QuotaBreach", "SqlQuotas"]

_COUNTERS: sa.Table = QuotaCounterRow.__table__  # type: ignore[attr-defined]
_WINDOWS = (("day", 86_400), ("minute", 60))
# One statement for both back ends (SQLite 3.35+ and PostgreSQL), written once: built with the
# expression language on every request it cost more than the database did.
_UPSERT = sa.text(
    'INSERT INTO quota_counters (master_agreement_id, organization_id, "window", window_start, count) '
    "VALUES (:m, :o, :w, :s, 1) "
    'ON CONFLICT (master_agreement_id, organization_id, "window", window_start) '
    "DO UPDATE SET count = quota_counters.count + 1 WHERE quota_counters.count < :cap "
    "RETURNING count"
)


class _Full(Exception):
    def __init__(self, breach: QuotaBreach) -> None:
        self.breach = breach


class SqlQuotas:
    """Counts requests against quotas in the broker's database."""

    def __init__(self, engine: sa.Engine, *, owns_engine: bool = False) -> None:
        self._engine = engine
        self._owns_engine = owns_engine

    @classmethod
    def beside(cls, engine: sa.Engine, busy_timeout_ms: int = 5000) -> SqlQuotas:
        """Quotas in ``engine``'s database. On SQLite through an engine of their own whose commits
        do not wait for the disk (``synchronous=NORMAL``: a power cut may forget the last counts,
        never corrupt them): a counter is not worth an fsync per request."""
        if engine.dialect.name != "sqlite":
            return cls(engine)
        own = create_engine(engine.url, busy_timeout_ms=busy_timeout_ms, synchronous="NORMAL")
        return cls(own, owns_engine=True)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

    async def take(
        self, master_agreement_id: str, organization_id: str, per_minute: int, per_day: int, now: dt.datetime
    ) -> QuotaBreach | None:
        """Count one request of ``organization_id`` under ``master_agreement_id``; the breach (and
        nothing counted) when a cap is reached."""
        caps = {"minute": per_minute, "day": per_day}
        return await asyncio.to_thread(self._take, master_agreement_id, organization_id, caps, now)

    def _take(self, master_id: str, org: str, caps: dict[str, int], now: dt.datetime) -> QuotaBreach | None:
        epoch = int(now.timestamp())
        try:
            with self._engine.begin() as conn:
                for window, seconds in _WINDOWS:
                    cap = caps[window]
                    if cap <= 0:
                        continue
                    start = epoch - epoch % seconds
                    count = self._increment(conn, master_id, org, window, start, cap)
                    if count is None:
                        raise _Full(QuotaBreach(master_id, window, cap, float(start + seconds - epoch)))
                    if count == 1:  # a new window: the ended ones of this consumer go
                        conn.execute(
                            sa.delete(_COUNTERS).where(
                                _COUNTERS.c.master_agreement_id == master_id,
                                _COUNTERS.c.organization_id == org,
                                _COUNTERS.c.window == window,
                                _COUNTERS.c.window_start < start,
                            )
                        )
        except _Full as full:
            return full.breach
        return None

    def _increment(
        self, conn: sa.Connection, master_id: str, org: str, window: str, start: int, cap: int
    ) -> int | None:
        """The window's count after adding one, or ``None`` when it is at ``cap`` already."""
        found = conn.execute(
            _UPSERT, {"m": master_id, "o": org, "w": window, "s": start, "cap": cap}
        ).scalar()
        return None if found is None else int(found)

    def used(self, master_agreement_id: str, organization_id: str, now: dt.datetime) -> dict[str, int]:
        """Requests counted in the current minute and day (for reports and tests)."""
        epoch = int(now.timestamp())
        out = {}
        with self._engine.connect() as conn:
            for window, seconds in _WINDOWS:
                start = epoch - epoch % seconds
                count = conn.execute(
                    sa.select(_COUNTERS.c.count).where(
                        _COUNTERS.c.master_agreement_id == master_agreement_id,
                        _COUNTERS.c.organization_id == organization_id,
                        _COUNTERS.c.window == window,
                        _COUNTERS.c.window_start == start,
                    )
                ).scalar()
                out[window] = int(count or 0)
        return out
