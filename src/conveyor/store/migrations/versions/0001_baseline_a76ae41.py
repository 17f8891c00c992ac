"""Baseline: the schema of release a76ae41, the last one made with `create_all`.

A database made before migrations existed has no `alembic_version` table, and may come
from any earlier release: each made the tables it knew, and releases from caba1f2 on added
the nullable columns that arrived later (`pid_started`, `progress`) at every open. So this
step adopts what is there: it creates the tables that are missing, and adds the columns and
indexes an existing table lacks (all nullable; rows already there stay valid).

The tables are a frozen copy, not `schema.metadata`: later revisions change the schema,
this one must keep meaning the same thing.

Revision ID: 0001_baseline_a76ae41
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline_a76ae41"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

baseline = sa.MetaData()

Timestamp = sa.Double
events = sa.Table(
    "events",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("run_id", sa.Integer, nullable=True, index=True),
    sa.Column("job_id", sa.String, nullable=True),
    sa.Column("state", sa.String, nullable=True),
    sa.Column("commit_sha", sa.String, nullable=True),
    sa.Column("actor", sa.String, nullable=True),
    sa.Column("data", sa.JSON, nullable=False),
)

runs = sa.Table(
    "runs",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("pipeline", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False, index=True),  # recovery scans RUNNING
    sa.Column("commit_sha", sa.String),
    sa.Column("branch", sa.String),
    sa.Column("tag", sa.String),
    sa.Column("author", sa.String),
    sa.Column("message", sa.Text),
    sa.Column("committed_at", Timestamp),
    sa.Column("actor", sa.String),
    sa.Column("trigger", sa.JSON, nullable=False),
    sa.Column("parallelism", sa.Integer),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String),
    sa.Column("pid_started", sa.BigInteger),  # the owner's start time (store/procs.py)
    sa.Column("workspace", sa.String),
    sa.Index("ix_runs_pipeline_branch_state", "pipeline", "branch", "state"),
)

jobs = sa.Table(
    "jobs",
    baseline,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("job_id", sa.String, primary_key=True),
    sa.Column("ordinal", sa.Integer, nullable=False),  # planned order
    sa.Column("name", sa.String, nullable=False),
    sa.Column("matrix", sa.JSON, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("plan_status", sa.String),
    sa.Column("reason", sa.Text),
    sa.Column("needs", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("exit_code", sa.Integer),
    sa.Column("failure", sa.String),
    sa.Column("detail", sa.Text),
    sa.Column("started_at", Timestamp),
    sa.Column("finished_at", Timestamp),
    sa.Column("cache_key", sa.String),
    sa.Column("log_blob", sa.String),
    sa.Column("outputs_blob", sa.String),
)

cache_entries = sa.Table(
    "cache_entries",
    baseline,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("pipeline", sa.String, nullable=False),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("outputs_manifest", sa.String),
    sa.Column("components", sa.JSON, nullable=False),
    sa.Index("ix_cache_entries_job", "pipeline", "job_id", "created_at"),
)

lock_tickets = sa.Table(
    "lock_tickets",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("group_name", sa.String, nullable=False),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid_started", sa.BigInteger),  # the owner's start time (store/procs.py)
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_lock_tickets_group_state", "group_name", "state"),
    sa.Index("ix_lock_tickets_run_state", "run_id", "state"),
)

reports = sa.Table(
    "reports",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("digest", sa.String, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_reports_run_kind", "run_id", "kind"),
)


environments = sa.Table(
    "environments",
    baseline,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("admin_port", sa.Integer, nullable=False),
    sa.Column("live_release", sa.String),  # serving all traffic once a deploy is done
    sa.Column("warm_release", sa.String),  # the previous live release, kept running
    sa.Column("routes", sa.JSON, nullable=False),  # the desired route table
    sa.Column("generation", sa.Integer, nullable=False),  # bumped by each change of intent
    sa.Column("updated_at", Timestamp, nullable=False),
)

releases = sa.Table(
    "releases",
    baseline,
    sa.Column("release_id", sa.String, primary_key=True),
    sa.Column("environment", sa.String, nullable=False, index=True),
    sa.Column("repository", sa.String, nullable=False),
    sa.Column("digest", sa.String, nullable=False),
    sa.Column("ports", sa.JSON, nullable=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

deploys = sa.Table(
    "deploys",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("release_id", sa.String, nullable=False),
    sa.Column("repository", sa.String, nullable=False),
    sa.Column("digest", sa.String, nullable=False),
    sa.Column("previous_release", sa.String),
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("run_id", sa.Integer),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String),
    sa.Column("pid_started", sa.BigInteger),  # the owner's start time (store/procs.py)
    # Where a progressive release stands (step, weights, last verdict): for `release status`
    # and for a controller that resumes it.
    sa.Column("progress", sa.JSON),
    sa.Index("ix_deploys_environment_state", "environment", "state"),
)

signal_samples = sa.Table(
    "signal_samples",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("release_id", sa.String, nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("signals", sa.JSON, nullable=False),
    sa.Column("saturation", sa.JSON),
    sa.Index("ix_signal_samples_release_ts", "environment", "release_id", "ts"),
)

flags = sa.Table(
    "flags",
    baseline,
    sa.Column("environment", sa.String, primary_key=True),
    sa.Column("kind", sa.String, primary_key=True),  # "flag" or "segment"
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    baseline,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer, nullable=False, unique=True),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("actor", sa.String),
    sa.Column("event_digest", sa.String, nullable=False),
    sa.Column("prev_hash", sa.String, nullable=False),
    sa.Column("hash", sa.String, nullable=False),
)

audit_signed_heads = sa.Table(
    "audit_signed_heads",
    baseline,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("head", sa.String, nullable=False),
    sa.Column("signed_at", Timestamp, nullable=False),
    sa.Column("key_id", sa.String, nullable=False),
    sa.Column("signature", sa.String, nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in baseline.sorted_tables:
        if inspector.has_table(table.name):
            _adopt(table, inspector)
        else:
            table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(baseline.sorted_tables):
        table.drop(bind, checkfirst=True)


def _adopt(table: sa.Table, inspector: sa.Inspector) -> None:
    """Give a table made by an earlier release the columns and indexes it lacks."""
    present = {column["name"] for column in inspector.get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in present]
    for column in missing:
        if not column.nullable:
            raise RuntimeError(f"{table.name}.{column.name} cannot be added to existing rows")
    if missing:
        with op.batch_alter_table(table.name) as batch:
            for column in missing:
                batch.add_column(sa.Column(column.name, column.type, nullable=True))
    indexes = {index["name"] for index in inspector.get_indexes(table.name)}
    for index in table.indexes:
        if index.name not in indexes:
            columns = [column.name for column in index.columns]
            op.create_index(str(index.name), table.name, columns, unique=index.unique)
