"""Consent records and gallery-wide legal bases.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.add_column(sa.Column("legal_basis", sa.String(32), nullable=True))
        batch.add_column(sa.Column("basis_justification", sa.Text, nullable=True))
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("consent_id")  # a placeholder until now: the consents table replaces it
        # When the person stops matching (epoch seconds, from their newest consent record); NULL: no end.
        batch.add_column(sa.Column("matchable_until", sa.BigInteger, nullable=True))
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
        sa.Column("basis", sa.String(32), nullable=False),
        sa.Column("evidence", sa.String(1000), nullable=False),
        sa.Column("recorded_by", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by", sa.String(200), nullable=True),
    )
    op.create_index("ix_consents_person_id", "consents", ["person_id"])


def downgrade() -> None:
    op.drop_table("consents")
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("matchable_until")
        batch.add_column(sa.Column("consent_id", sa.String(200), nullable=True))
    with op.batch_alter_table("galleries") as batch:
        batch.drop_column("basis_justification")
        batch.drop_column("legal_basis")
