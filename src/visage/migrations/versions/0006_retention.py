"""Retention: how long a gallery keeps templates.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer, nullable=True))  # NULL: templates kept


def downgrade() -> None:
    with op.batch_alter_table("galleries") as batch:
        batch.drop_column("retention_days")
