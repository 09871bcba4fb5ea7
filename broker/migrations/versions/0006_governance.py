"""Member organisations with kind and contact, and the governance log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

``organisations`` gains ``kind`` (CONSUMER, PROVIDER, OVERSIGHT, OPERATOR; existing rows are
consumers, as every organisation was before) and ``contact``. ``governance_events`` is the
hash-chained, signed log of governance changes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="CONSUMER"))
        batch.add_column(sa.Column("contact", sa.String(length=256), nullable=False, server_default=""))
    op.create_table(
        "governance_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_organization_id", sa.String(length=64), nullable=False),
        sa.Column("actor_role", sa.String(length=16), nullable=False),
        sa.Column("actor_via", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("governance_events")
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("contact")
        batch.drop_column("kind")
