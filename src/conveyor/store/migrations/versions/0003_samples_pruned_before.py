"""environments.samples_pruned_before: how far retention has downsampled the samples, so
each check reads only the samples that aged since the last one.

Revision ID: 0003_samples_pruned_before
Revises: 0002_signal_samples_env_ts
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_samples_pruned_before"
down_revision: str | None = "0002_signal_samples_env_ts"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("samples_pruned_before", sa.Double, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_column("samples_pruned_before")
