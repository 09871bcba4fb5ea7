"""Alembic environment: migrate the connection that ``broker.storage.init_schema`` hands over.

The broker migrates itself at start; there is no ``alembic.ini``. A developer who wants the
alembic CLI (e.g. ``alembic revision --autogenerate``) can point ``script_location`` at
``onceonly.broker:migrations`` and set ``sqlalchemy.url``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel

from onceonly.broker import storage

config = context.config
target_metadata = SQLModel.metadata


def _migrate(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_name=lambda name, type_, _parent: type_ != "table" or name in storage.TABLE_NAMES,
        compare_type=True,
        # SQLite cannot ALTER most things: let future revisions rebuild tables there.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = storage.create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as conn:
            _migrate(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
