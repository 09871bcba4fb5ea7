"""Hourly usage roll-ups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

``usage_hours`` holds the usage of each closed hour (counts by outcome and exact latency
histograms per provider, consumer organisation and procedure), so usage over a long range is
answered without reading every trace of it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_hours",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("grouping", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("latencies", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("hour", "grouping", "key"),
    )


def downgrade() -> None:
    op.drop_table("usage_hours")
