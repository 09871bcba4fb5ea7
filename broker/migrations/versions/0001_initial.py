"""The initial schema: organisations, agreements, vetoes, trace records and stored replies.

Revision ID: 0001
Revises:
Create Date: 2026-05-20

Written out in plain SQLAlchemy types (not the live models) so that it keeps meaning the
same thing when ``broker/storage.py`` moves on; ``tests/broker/test_migrations.py`` checks
that head still equals the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "agreements",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("procedure_code", sa.String(length=128), nullable=False),
        sa.Column("certificate_type_ids", sa.Text(), nullable=False),
        sa.Column("legal_bases", sa.Text(), nullable=False),
        sa.Column("legal_references", sa.Text(), nullable=False),
        sa.Column("consent_required", sa.Boolean(), nullable=False),
        sa.Column("valid_from", _TZ, nullable=False),
        sa.Column("valid_until", _TZ, nullable=True),
        sa.Column("description", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organisations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_agreements_organization_id", "agreements", ["organization_id"])
    op.create_index("ix_agreements_procedure_code", "agreements", ["procedure_code"])
    op.create_table(
        "vetoes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agreement_id", sa.String(length=128), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["agreement_id"], ["agreements.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agreement_id", "provider_id", name="uq_veto_agreement_provider"),
    )
    op.create_table(
        "trace_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trace_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_digest", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.Column("consumer_organization_id", sa.String(length=64), nullable=False),
        sa.Column("consumer_unit", sa.String(), nullable=False),
        sa.Column("officer_id", sa.String(), nullable=False),
        sa.Column("procedure_code", sa.String(length=128), nullable=False),
        sa.Column("purpose_text", sa.Text(), nullable=False),
        sa.Column("case_file_id", sa.String(), nullable=False),
        sa.Column("legal_basis_kind", sa.String(length=16), nullable=False),
        sa.Column("legal_basis_reference", sa.String(), nullable=False),
        sa.Column("subject_document_type", sa.String(length=16), nullable=False),
        sa.Column("subject_ref", sa.String(length=128), nullable=False),
        sa.Column("certificate_type_ids", sa.Text(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("denial_reason", sa.String(length=64), nullable=True),
        sa.Column("denial_detail", sa.Text(), nullable=False),
        sa.Column("outcomes", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consumer_organization_id", "request_id", name="uq_trace_org_request"),
        sa.UniqueConstraint("trace_id"),
    )
    op.create_index(
        "ix_trace_records_consumer_organization_id", "trace_records", ["consumer_organization_id"]
    )
    op.create_index("ix_trace_records_procedure_code", "trace_records", ["procedure_code"])
    op.create_index("ix_trace_records_subject_ref", "trace_records", ["subject_ref"])
    op.create_table(
        "replies",
        sa.Column("organization_id", sa.String(length=64), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_digest", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TZ, nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "request_id"),
    )


def downgrade() -> None:
    op.drop_table("replies")
    op.drop_index("ix_trace_records_subject_ref", table_name="trace_records")
    op.drop_index("ix_trace_records_procedure_code", table_name="trace_records")
    op.drop_index("ix_trace_records_consumer_organization_id", table_name="trace_records")
    op.drop_table("trace_records")
    op.drop_table("vetoes")
    op.drop_index("ix_agreements_procedure_code", table_name="agreements")
    op.drop_index("ix_agreements_organization_id", table_name="agreements")
    op.drop_table("agreements")
    op.drop_table("organisations")
