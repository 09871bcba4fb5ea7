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
from sqlalchemy.dialects import postgresql, sqlite

from onceonly.broker.domain import QuotaBreach
from onceonly.broker.storage import QuotaCounterRow

__all__ = ["QuotaBreach", "SqlQuotas"]

_COUNTERS: sa.Table = QuotaCounterRow.__table__  # type: ignore[attr-defined]
_WINDOWS = (("day", 86_400), ("minute", 60))


class _Full(Exception):
    def __init__(self, breach: QuotaBreach) -> None:
        self.breach = breach


class SqlQuotas:
    """Counts requests against quotas in the broker's database."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

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
        insert = self._insert(_COUNTERS).values(
            master_agreement_id=master_id, organization_id=org, window=window, window_start=start, count=1
        )
        stmt = insert.on_conflict_do_update(
            index_elements=[
                _COUNTERS.c.master_agreement_id,
                _COUNTERS.c.organization_id,
                _COUNTERS.c.window,
                _COUNTERS.c.window_start,
            ],
            set_={"count": _COUNTERS.c.count + 1},
            where=_COUNTERS.c.count < cap,
        ).returning(_COUNTERS.c.count)
        found = conn.execute(stmt).scalar()
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
