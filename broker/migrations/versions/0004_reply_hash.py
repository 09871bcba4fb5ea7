"""Stored replies inside the hash chain.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

``trace_records.reply_hash`` holds the SHA-256 of the sealed reply stored with the record, so a
stored reply that is changed no longer matches the chain. Empty in older records and in records
stored without a reply; hashed into the chain only when set, so older records keep their hashes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trace_records") as batch:
        batch.add_column(sa.Column("reply_hash", sa.String(length=64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("trace_records") as batch:
        batch.drop_column("reply_hash")
