"""Observe: the alerts received and the incidents with their timelines.

Revision ID: 0006_incidents
Revises: 0005_api_indexes
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_incidents"
down_revision: str | None = "0005_api_indexes"
branch_labels: str | None = None
depends_on: str | None = None

Timestamp = sa.Double


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String, nullable=False),
        sa.Column("environment", sa.String, nullable=False),
        sa.Column("release_id", sa.String),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("alertname", sa.String),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("annotations", sa.JSON, nullable=False),
        sa.Column("starts_at", Timestamp, nullable=False),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("incident_id", sa.Integer),
        sa.Column("resolved_at", Timestamp),
        sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"),
        sa.Column("duplicate_noted_at", Timestamp),
    )
    op.create_index("ix_alerts_fingerprint", "alerts", ["fingerprint", "id"])
    op.create_index("ix_alerts_environment", "alerts", ["environment", "id"])
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("opened_at", Timestamp, nullable=False),
        sa.Column("acknowledged_at", Timestamp),
        sa.Column("mitigated_at", Timestamp),
        sa.Column("resolved_at", Timestamp),
        sa.Column("suspects", sa.JSON, nullable=False),
        sa.Column("flag_changes", sa.JSON, nullable=False),
        sa.Column("time_to_detect", sa.Double),
        sa.Column("time_to_restore", sa.Double),
        sa.Column("requirement", sa.JSON),
    )
    op.create_index("ix_incidents_environment_state", "incidents", ["environment", "state"])
    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
        sa.Column("entry", sa.String, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_incident_timeline_incident", "incident_timeline", ["incident_id", "id"])


def downgrade() -> None:
    op.drop_table("incident_timeline")
    op.drop_table("incidents")
    op.drop_table("alerts")
