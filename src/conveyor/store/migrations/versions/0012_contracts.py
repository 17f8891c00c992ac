"""Contracts: the pacts a consumer version recorded and the provider versions that verified
them (issue 18's can-i-deploy).

Revision ID: 0012_contracts
Revises: 0011_dora_index
Create Date: 2026-12-07
"""

from __future__ import annotations

revision = "0012_contracts"
down_revision: str | None = "0011_dora_index"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass  # filled in by the part that needs tables


def downgrade() -> None:
    pass
