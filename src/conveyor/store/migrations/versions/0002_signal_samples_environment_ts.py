"""An index on signal_samples (environment, ts): retention deletes and downsamples an
environment's samples by age, across its releases.

Revision ID: 0002_signal_samples_env_ts
Revises: 0001_baseline_a76ae41
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0002_signal_samples_env_ts"
down_revision: str | None = "0001_baseline_a76ae41"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("signal_samples") as batch:
        batch.create_index("ix_signal_samples_environment_ts", ["environment", "ts"])


def downgrade() -> None:
    with op.batch_alter_table("signal_samples") as batch:
        batch.drop_index("ix_signal_samples_environment_ts")
