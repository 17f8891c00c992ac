"""Observe: the alerts received and the incidents with their timelines.

Revision ID: 0006_incidents
Revises: 0005_api_indexes
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0006_incidents"
down_revision: str | None = "0005_api_indexes"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
