"""Master agreements, agreements for several procedures, quotas, and deferred disclosures released.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

``master_agreements`` records every version of a master agreement (its clauses as JSON).
``agreements`` (what policy enforces) gains ``procedure_codes`` (JSON; filled from
``procedure_code`` for the agreements already there), the master agreement and version it is bound
to, and that master's quotas. ``agreement_versions.released`` says who released a DEFERRED
disclosure early. ``quota_counters`` counts each consumer's requests per minute and per day.
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "master_agreements",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("registered_by", sa.String(length=64), nullable=False),
        sa.Column("registered_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", "version"),
    )
    op.create_table(
        "quota_counters",
        sa.Column("master_agreement_id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("master_agreement_id", "organization_id", "window", "window_start"),
    )
    with op.batch_alter_table("agreements") as batch:
        batch.add_column(sa.Column("procedure_codes", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("master_agreement_id", sa.String(length=128), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("master_version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("quota_per_minute", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("quota_per_day", sa.Integer(), nullable=False, server_default="0"))
    agreements = sa.table(
        "agreements", sa.column("id"), sa.column("procedure_code"), sa.column("procedure_codes")
    )
    conn = op.get_bind()
    for row in conn.execute(sa.select(agreements.c.id, agreements.c.procedure_code)).all():
        conn.execute(
            sa.update(agreements)
            .where(agreements.c.id == row.id)
            .values(procedure_codes=json.dumps([row.procedure_code]))
        )
    with op.batch_alter_table("agreement_versions") as batch:
        batch.add_column(sa.Column("released", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("agreement_versions") as batch:
        batch.drop_column("released")
    with op.batch_alter_table("agreements") as batch:
        for name in (
            "quota_per_day",
            "quota_per_minute",
            "master_version",
            "master_agreement_id",
            "procedure_codes",
        ):
            batch.drop_column(name)
    op.drop_table("quota_counters")
    op.drop_table("master_agreements")
