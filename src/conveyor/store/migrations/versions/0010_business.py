"""Observe: business metric samples per release and flag variant.

Revision ID: 0010_business
Revises: 0009_requirements
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0010_business"
down_revision: str | None = "0009_requirements"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
