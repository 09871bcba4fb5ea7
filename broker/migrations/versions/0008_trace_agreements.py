"""The agreement version that allowed each certificate type, in every granted trace.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

``trace_records.agreements`` holds JSON ``[[certificate type, agreement, version], …]`` (empty for
denials and older records; hashed into the chain only when set, so older records keep their hashes).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trace_records") as batch:
        batch.add_column(sa.Column("agreements", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("trace_records") as batch:
        batch.drop_column("agreements")
