"""Observe: business metric samples per release and flag variant.

Revision ID: 0010_business
Revises: 0009_requirements
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_business"
down_revision: str | None = "0009_requirements"
branch_labels: str | None = None
depends_on: str | None = None

Timestamp = sa.Double


def upgrade() -> None:
    op.create_table(
        "business_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("environment", sa.String, nullable=False),
        sa.Column("release_id", sa.String, nullable=False),
        sa.Column("replica", sa.String, nullable=False),
        sa.Column("restarts", sa.Integer, nullable=False),
        sa.Column("metric", sa.String, nullable=False),
        sa.Column("flag", sa.String, nullable=False),
        sa.Column("variant", sa.String, nullable=False),
        sa.Column("value", sa.Double),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
    )
    op.create_index("ix_business_samples_env_ts", "business_samples", ["environment", "ts"])


def downgrade() -> None:
    op.drop_index("ix_business_samples_env_ts", table_name="business_samples")
    op.drop_table("business_samples")
