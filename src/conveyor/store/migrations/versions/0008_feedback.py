"""Observe: user feedback per release and flag variant.

Revision ID: 0008_feedback
Revises: 0007_replica_logs
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0008_feedback"
down_revision: str | None = "0007_replica_logs"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
