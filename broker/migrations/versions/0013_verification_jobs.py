"""Asynchronous verifications: jobs (the sealed submission, progress, lease) and their decided subjects.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verification_jobs",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("submission_id", sa.String(length=64), nullable=False),
        sa.Column("submission_digest", sa.String(length=64), nullable=False),
        sa.Column("submission", sa.LargeBinary(), nullable=False),
        sa.Column("officer_identification", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("subjects", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("job_id"),
        sa.UniqueConstraint("organization_id", "submission_id", name="uq_verification_jobs_submission"),
    )
    op.create_index("ix_verification_jobs_state_submitted", "verification_jobs", ["state", "submitted_at"])
    op.create_table(
        "verification_job_items",
        sa.Column("job_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("error", sa.LargeBinary(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "position"),
    )


def downgrade() -> None:
    op.drop_table("verification_job_items")
    op.drop_index("ix_verification_jobs_state_submitted", table_name="verification_jobs")
    op.drop_table("verification_jobs")
