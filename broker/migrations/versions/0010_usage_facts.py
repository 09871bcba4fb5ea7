"""Usage facts: each closed hour's checks by consumer, procedure, legal-basis kind, certificate
type, provider, outcome and denial reason.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

Hours are rolled up into ``usage_facts`` by the broker in the background (``broker.usage_facts``),
from the traces that are still there: hours purged before this revision have no facts.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_facts",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
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
            "hour",
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
    op.drop_table("usage_facts")
