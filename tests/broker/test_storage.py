"""Storage: migrations equal the models, engines for each back end, UTC timestamps.

Every test that takes ``database_url`` runs on SQLite and on PostgreSQL (tests/broker/conftest.py).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

from onceonly.broker.storage import (
    TABLE_NAMES,
    UTCDateTime,
    create_engine,
    init_schema,
    migrations_config,
    normalise_url,
)
from tests.broker.conftest import backend


def head_revision() -> str:
    head = ScriptDirectory.from_config(migrations_config()).get_current_head()
    assert head is not None
    return head


def schema_differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        init_schema(engine)
        assert schema_differences(engine) == []
        assert current_revision(engine) == head_revision()
        assert set(sa.inspect(engine).get_table_names()) >= TABLE_NAMES
        init_schema(engine)  # a second start changes nothing
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    engines = [create_engine(postgres_url) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def start(engine: sa.Engine) -> None:
        try:
            barrier.wait(5)
            init_schema(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        assert schema_differences(engines[0]) == []
    finally:
        for e in engines:
            e.dispose()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("postgresql://u:p@db.example:5433/onceonly", "postgresql+psycopg"),
        ("postgres://u:p@db.example:5433/onceonly", "postgresql+psycopg"),
        ("postgresql+psycopg://u:p@db.example:5433/onceonly", "postgresql+psycopg"),
        ("postgresql+psycopg2://u:p@db.example:5433/onceonly", "postgresql+psycopg2"),  # asked for: kept
    ],
)
def test_postgresql_urls_use_psycopg_3(given: str, driver: str) -> None:
    url = normalise_url(given)
    assert url.drivername == driver
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "p",
        "db.example",
        5433,
        "onceonly",
    )
    assert normalise_url("sqlite:///var/onceonly.db").drivername == "sqlite"


def test_postgresql_sessions_fail_fast_on_locks(postgres_url: str) -> None:
    # The URL's own options (here a second one besides the test's search_path) are kept.
    url = normalise_url(postgres_url).update_query_pairs(
        [("options", "-cstatement_timeout=9000")], append=True
    )
    engine = create_engine(url.set(drivername="postgresql"), busy_timeout_ms=250)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        with engine.connect() as conn:
            assert conn.execute(sa.text("SHOW lock_timeout")).scalar_one() == "250ms"
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "9s"
            assert conn.execute(sa.text("SELECT current_schema()")).scalar_one().startswith("test_")
    finally:
        engine.dispose()


def test_timestamps_come_back_in_utc(database_url: str) -> None:
    table = sa.Table("stamps", sa.MetaData(), sa.Column("at", UTCDateTime, nullable=False))
    engine = create_engine(database_url)
    madrid = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    try:
        table.create(engine)
        with engine.begin() as conn:
            conn.execute(table.insert(), [{"at": madrid}])
            if backend(database_url) == "postgresql":
                conn.execute(sa.text("SET LOCAL TIME ZONE 'America/Bogota'"))  # a session elsewhere
            stored = conn.execute(sa.select(table.c.at)).scalar_one()
        assert stored == madrid and stored.tzinfo == UTC and stored.hour == 11
        with pytest.raises(sa.exc.StatementError, match="naive datetime"), engine.begin() as conn:
            conn.execute(table.insert(), [{"at": datetime(2026, 3, 1, 12, 0)}])
    finally:
        engine.dispose()
