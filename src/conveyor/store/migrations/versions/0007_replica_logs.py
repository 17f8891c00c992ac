"""Observe: the replica logs kept per release.

Revision ID: 0007_replica_logs
Revises: 0006_incidents
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0007_replica_logs"
down_revision: str | None = "0006_incidents"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
