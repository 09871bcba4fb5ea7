"""How the officer was identified, and agreements that require an authenticated officer.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

``trace_records.officer_identification`` records whether the officer named by a request was
authenticated by a token or asserted by an application certificate (empty in older traces; it
is hashed into the chain only when set, so older records keep their hashes). Agreements gain
``officer_token_required`` and ``officer_document_required``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trace_records") as batch:
        batch.add_column(
            sa.Column("officer_identification", sa.String(length=16), nullable=False, server_default="")
        )
    with op.batch_alter_table("agreements") as batch:
        batch.add_column(
            sa.Column("officer_token_required", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("officer_document_required", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("agreements") as batch:
        batch.drop_column("officer_document_required")
        batch.drop_column("officer_token_required")
    with op.batch_alter_table("trace_records") as batch:
        batch.drop_column("officer_identification")
