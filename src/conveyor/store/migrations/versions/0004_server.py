"""The server's tables (run queue, webhook deliveries, sessions, login links) and the
runs list's indexes.

Revision ID: 0004_server
Revises: 0003_samples_pruned_before
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_server"
down_revision: str | None = "0003_samples_pruned_before"
branch_labels: str | None = None
depends_on: str | None = None

Timestamp = sa.Double


def upgrade() -> None:
    op.create_table(
        "run_queue",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("requested_at", Timestamp, nullable=False),
        sa.Column("pipeline", sa.String),
        sa.Column("repository", sa.String, nullable=False),
        sa.Column("commit_sha", sa.String, nullable=False),
        sa.Column("branch", sa.String),
        sa.Column("trigger", sa.JSON, nullable=False),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("options", sa.JSON, nullable=False),
        sa.Column("run_id", sa.Integer),
        sa.Column("claimed_at", Timestamp),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.String),
        sa.Column("pid_started", sa.BigInteger),
        sa.Column("finished_at", Timestamp),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_run_queue_state", "run_queue", ["state", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("forge", sa.String, nullable=False),
        sa.Column("delivery_id", sa.String),
        sa.Column("received_at", Timestamp, nullable=False),
        sa.Column("event", sa.String),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("queue_id", sa.Integer),
    )
    op.create_index(
        "ix_webhook_deliveries_forge_delivery", "webhook_deliveries", ["forge", "delivery_id"]
    )
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String, primary_key=True),
        sa.Column("user", sa.String, nullable=False),
        sa.Column("via", sa.String, nullable=False),
        sa.Column("csrf", sa.String, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("revoked_at", Timestamp),
    )
    op.create_table(
        "login_links",
        sa.Column("id_hash", sa.String, primary_key=True),
        sa.Column("user", sa.String, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("used_at", Timestamp),
    )
    op.create_index("ix_runs_commit_sha", "runs", ["commit_sha"])
    op.create_index("ix_runs_branch_id", "runs", ["branch", "id"])
    op.create_index("ix_runs_state_id", "runs", ["state", "id"])


def downgrade() -> None:
    for index in ("ix_runs_state_id", "ix_runs_branch_id", "ix_runs_commit_sha"):
        op.drop_index(index, table_name="runs")
    for table in ("login_links", "sessions", "webhook_deliveries", "run_queue"):
        op.drop_table(table)
