"""The runs list by pipeline, newest first, without sorting every run of the pipeline:
an index on (pipeline, id) for the API's `?pipeline=` filter.

Revision ID: 0005_api_indexes
Revises: 0004_server
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0005_api_indexes"
down_revision: str | None = "0004_server"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_runs_pipeline_id", "runs", ["pipeline", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_pipeline_id", "runs")
