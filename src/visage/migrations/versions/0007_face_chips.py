"""Sealed face chips, kept by galleries that opt in, so templates can be re-embedded by a new model.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.add_column(sa.Column("keep_chips", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "chips",
        sa.Column("template_id", BigId, sa.ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
    )
    op.create_index("ix_chips_person_id", "chips", ["person_id"])


def downgrade() -> None:
    op.drop_table("chips")
    with op.batch_alter_table("galleries") as batch:
        batch.drop_column("keep_chips")
