"""Agreement versions and providers' decisions: agreements proposed, approved, vetoed, revoked.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

``agreement_versions`` records every version of an agreement and its state; ``agreement_decisions``
each provider's approval or veto of a proposed version. ``agreements`` keeps what is enforced now:
it gains the ``version`` in force (1 for the agreements already there) and ``suspended`` (why an
oversight body suspended it; empty when not).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("agreements") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("suspended", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "agreement_versions",
        sa.Column("agreement_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", _TZ, nullable=False),
        sa.Column("decided_at", _TZ, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "version"),
    )
    op.create_table(
        "agreement_decisions",
        sa.Column("agreement_id", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "version", "provider_id"),
    )


def downgrade() -> None:
    op.drop_table("agreement_decisions")
    op.drop_table("agreement_versions")
    with op.batch_alter_table("agreements") as batch:
        batch.drop_column("suspended")
        batch.drop_column("version")
