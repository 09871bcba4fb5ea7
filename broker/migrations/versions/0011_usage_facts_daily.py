"""Usage facts by day: each closed day's hours summed, so that a year is read as 365 days of rows.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_facts_daily",
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumer_organization_id", sa.String(length=64), nullable=False),
        sa.Column("procedure_code", sa.String(length=128), nullable=False),
        sa.Column("legal_basis_kind", sa.String(length=16), nullable=False),
        sa.Column("certificate_type_id", sa.String(length=128), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("denial_reason", sa.String(length=64), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "consumer_organization_id",
            "procedure_code",
            "legal_basis_kind",
            "certificate_type_id",
            "provider_id",
            "outcome",
            "denial_reason",
        ),
    )


def downgrade() -> None:
    op.drop_table("usage_facts_daily")
