"""Contracts: the pacts a consumer version recorded and the provider versions that verified
them (issue 18's can-i-deploy).

Revision ID: 0012_contracts
Revises: 0011_dora_index
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_contracts"
down_revision: str | None = "0011_dora_index"
branch_labels: str | None = None
depends_on: str | None = None


Timestamp = sa.Double


def upgrade() -> None:
    op.create_table(
        "pacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("consumer", sa.String, nullable=False),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("consumer_version", sa.String, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.String, nullable=False),
        sa.Column("digest", sa.String, nullable=False),
        sa.Column("interactions", sa.JSON, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
    )
    op.create_index("ix_pacts_consumer_provider", "pacts", ["consumer", "provider", "run_id"])
    op.create_table(
        "pact_verifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("provider_version", sa.String, nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.String, nullable=False),
        sa.Column("consumer", sa.String, nullable=False),
        sa.Column("consumer_version", sa.String, nullable=False),
        sa.Column("pact_digest", sa.String, nullable=False),
        sa.Column("environment", sa.String, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("failures", sa.JSON, nullable=False),
        sa.Column("ts", Timestamp, nullable=False),
    )
    op.create_index("ix_pact_verifications_provider", "pact_verifications", ["provider", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_pact_verifications_provider", table_name="pact_verifications")
    op.drop_table("pact_verifications")
    op.drop_index("ix_pacts_consumer_provider", table_name="pacts")
    op.drop_table("pacts")
