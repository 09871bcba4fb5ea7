"""The whole broker on PostgreSQL: migrate at start, seed, verify, replay, refuse, trace.

The rest of the suite runs the broker on SQLite; this is the same path through
``ONCEONLY_DATABASE_URL`` on a real PostgreSQL server (tests/broker/conftest.py).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from onceonly.broker.storage import create_engine
from onceonly.consumers.client import AlreadyExists, Denied, Purpose
from tests.conftest import INCOME, ORG, Platform, resident, verify_kwargs


async def test_broker_serves_and_traces_on_postgresql(platform: Platform, postgres_url: str) -> None:
    await platform.start_reference_providers()
    app = await platform.start_broker(database_url=postgres_url)
    client = platform.client(app)
    r = resident()

    first = await client.verify(request_id="req-pg-1", **verify_kwargs(r))
    assert first.outcomes and all(o.verified for o in first.outcomes)
    again = await client.verify(request_id="req-pg-1", **verify_kwargs(r))  # an idempotent retry
    assert again == first
    with pytest.raises(AlreadyExists):
        await client.verify(
            request_id="req-pg-1", **verify_kwargs(r, checks=[(INCOME, {"threshold_eur": "1"})])
        )
    with pytest.raises(Denied) as denied:
        await client.verify(**verify_kwargs(r, purpose=Purpose("NO-AGREEMENT", "Something else", "EXP-9")))

    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT trace_id, decision FROM trace_records WHERE consumer_organization_id = :org"),
                {"org": ORG},
            ).all()
            replies = conn.execute(sa.text("SELECT count(*) FROM replies")).scalar_one()
    finally:
        engine.dispose()
    assert {(row.trace_id, row.decision) for row in rows} == {
        (first.trace_id, "GRANTED"),
        (denied.value.trace_id, "DENIED"),
    }
    assert replies == 2
