"""Governance changes reach every replica at once on PostgreSQL: LISTEN/NOTIFY.

A governance change commits with ``NOTIFY onceonly_policy`` in its transaction (PostgreSQL delivers
it on commit, never for a change that rolled back). Each broker on PostgreSQL keeps one connection
listening on that channel and re-reads its policy when told; the periodic refresh
(``ONCEONLY_POLICY_REFRESH_S``) stays as the fallback for a notification missed while the listening
connection was down (it reconnects by itself, and re-reads the policy once it is back).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import make_url

__all__ = ["CHANNEL", "listen_for_changes", "notify_change"]

log = logging.getLogger(__name__)

CHANNEL = "onceonly_policy"
_RETRY_S = (0.5, 1.0, 2.0, 5.0)


def notify_change(conn: sa.Connection) -> None:
    """Tell every replica, once ``conn``'s transaction commits, that governance changed."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"NOTIFY {CHANNEL}"))


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_for_changes(url: str, changed: Callable[[], Awaitable[None]]) -> None:
    """Call ``changed`` whenever another replica (or this one) commits a governance change; runs
    until cancelled, reconnecting after a failure."""
    attempt = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(_conninfo(url), autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                if attempt:
                    log.info("listening for governance changes again")
                    await _refresh(changed)  # whatever happened while the connection was down
                attempt = 0
                async for _ in conn.notifies():
                    await _refresh(changed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: the periodic refresh covers the gap
            delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
            attempt += 1
            log.warning(
                "cannot listen for governance changes", extra={"error": str(exc), "retry_in_s": delay}
            )
            await asyncio.sleep(delay)


async def _refresh(changed: Callable[[], Awaitable[None]]) -> None:
    try:
        await changed()
    except Exception as exc:  # keep the policy in hand; the periodic refresh tries again
        log.warning("policy refresh after a governance change failed", extra={"error": str(exc)})
