"""Hash-chained trace records and signed chain checkpoints.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Every trace record gets its place in its replica's chain (``chain_id``, ``seq``), the hash
of the record before it and its own hash. Records written before this revision have no
place in a chain; they are put in the chain ``unchained`` at seq = -id, which
``onceonly ledger verify`` reports.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trace_records") as batch:
        batch.add_column(
            sa.Column("chain_id", sa.String(length=64), nullable=False, server_default="unchained")
        )
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=False, server_default=""))
        batch.add_column(sa.Column("record_hash", sa.String(length=64), nullable=False, server_default=""))
    op.execute("UPDATE trace_records SET seq = -id")
    with op.batch_alter_table("trace_records") as batch:
        batch.alter_column("chain_id", server_default=None)
        batch.alter_column("seq", server_default=None)
        batch.alter_column("prev_hash", server_default=None)
        batch.alter_column("record_hash", server_default=None)
    op.create_index("uq_trace_chain_seq", "trace_records", ["chain_id", "seq"], unique=True)
    op.create_index("ix_trace_records_created_at", "trace_records", ["created_at"])
    op.create_table(
        "chain_checkpoints",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id", "seq", name="uq_checkpoint_chain_seq"),
    )


def downgrade() -> None:
    op.drop_table("chain_checkpoints")
    op.drop_index("ix_trace_records_created_at", table_name="trace_records")
    op.drop_index("uq_trace_chain_seq", table_name="trace_records")
    with op.batch_alter_table("trace_records") as batch:
        batch.drop_column("record_hash")
        batch.drop_column("prev_hash")
        batch.drop_column("seq")
        batch.drop_column("chain_id")
