"""Quality: per-release code-quality trends (complexity, duplication, coverage).

Revision ID: 0013_quality
Revises: 0012_contracts
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0013_quality"
down_revision: str | None = "0012_contracts"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
