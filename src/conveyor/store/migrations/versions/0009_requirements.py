"""Observe: requirements filed from insights and the commits linked to them.

Revision ID: 0009_requirements
Revises: 0008_feedback
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_requirements"
down_revision: str | None = "0008_feedback"
branch_labels: str | None = None
depends_on: str | None = None

Timestamp = sa.Double


def upgrade() -> None:
    op.create_table(
        "requirements",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String, nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("source", sa.String, nullable=False, index=True),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("filed_on", sa.String, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("filed_by", sa.String, nullable=False),
        sa.Column("filed_at", Timestamp, nullable=False),
        sa.Column("addressed_by", sa.String),
        sa.Column("addressed_at", Timestamp),
        sa.Column("closed", sa.Boolean),
    )


def downgrade() -> None:
    op.drop_table("requirements")
