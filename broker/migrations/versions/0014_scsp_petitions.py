"""SCSP petitions: each IdPeticion taken, synchronous or asynchronous, and an asynchronous one's body.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scsp_petitions",
        sa.Column("id_peticion", sa.String(length=26), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("elements", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.String(length=64), nullable=True),
        sa.Column("petition", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_peticion"),
    )
    op.create_index("ix_scsp_petitions_expires_at", "scsp_petitions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_scsp_petitions_expires_at", table_name="scsp_petitions")
    op.drop_table("scsp_petitions")
