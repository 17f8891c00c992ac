"""DORA reads a year of deploy, traffic, rollback and incident events in one query: an
index on the event log's (kind, ts), so it never scans the run and job events.

Revision ID: 0011_dora_index
Revises: 0010_business
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0011_dora_index"
down_revision: str | None = "0010_business"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_events_kind_ts", "events", ["kind", "ts"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_ts", "events")
