"""Observe: user feedback per release and flag variant.

Revision ID: 0008_feedback
Revises: 0007_replica_logs
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_feedback"
down_revision: str | None = "0007_replica_logs"
branch_labels: str | None = None
depends_on: str | None = None

Timestamp = sa.Double


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("feedback_id", sa.String, nullable=False, unique=True),
        sa.Column("environment", sa.String, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("release_id", sa.String),
        sa.Column("route", sa.String, nullable=False),
        sa.Column("variants", sa.JSON, nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("ix_feedback_environment_id", "feedback", ["environment", "id"])
    op.create_index("ix_feedback_environment_release", "feedback", ["environment", "release_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_environment_release", "feedback")
    op.drop_index("ix_feedback_environment_id", "feedback")
    op.drop_table("feedback")
