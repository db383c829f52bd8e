"""The video archive: sightings (sealed fused embeddings), pseudonymous unknowns, alerts and their deliveries,
stream gaps.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")
Moment = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sighting_archives",
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "unknowns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("label", sa.String(40), nullable=False, unique=True),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("first_seen", Moment, nullable=False),
        sa.Column("last_seen", Moment, nullable=False),
        sa.Column("sightings", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "sightings",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("track_id", sa.Integer, nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("start_seconds", sa.Float, nullable=False),
        sa.Column("end_seconds", sa.Float, nullable=False),
        sa.Column("started_at", Moment, nullable=False),
        sa.Column("ended_at", Moment, nullable=False),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("best_quality", sa.Float, nullable=False),
        sa.Column("gallery_id", sa.Integer, sa.ForeignKey("galleries.id", ondelete="SET NULL"), nullable=True),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=True),
        sa.Column("similarity", sa.Float, nullable=True),
        sa.Column("unknown_id", sa.Integer, sa.ForeignKey("unknowns.id", ondelete="SET NULL"), nullable=True),
        sa.Column("embedding", sa.LargeBinary, nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("thumbnail", sa.LargeBinary, nullable=True),
        sa.Column("thumbnail_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", Moment, nullable=False),
    )
    op.create_index("ix_sightings_started_at", "sightings", ["started_at"])
    op.create_index("ix_sightings_source", "sightings", ["source"])
    op.create_index("ix_sightings_person_id", "sightings", ["person_id"])
    op.create_index("ix_sightings_unknown_id", "sightings", ["unknown_id"])
    op.create_table(
        "alerts",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("track_id", sa.Integer, nullable=False),
        sa.Column("gallery_id", sa.Integer, sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("person_id", sa.Integer, sa.ForeignKey("persons.id", ondelete="CASCADE"), nullable=False),
        sa.Column("similarity", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("stream_seconds", sa.Float, nullable=False),
        sa.Column("raised_at", Moment, nullable=False),
    )
    op.create_index("ix_alerts_person_id", "alerts", ["person_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("alert_id", BigId, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("at", Moment, nullable=False),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])
    op.create_table(
        "stream_gaps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("started_at", Moment, nullable=False),
        sa.Column("ended_at", Moment, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("stream_gaps", "alert_deliveries", "alerts", "sightings", "unknowns", "sighting_archives"):
        op.drop_table(table)
