"""Observe: requirements filed from insights and the commits linked to them.

Revision ID: 0009_requirements
Revises: 0008_feedback
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0009_requirements"
down_revision: str | None = "0008_feedback"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
