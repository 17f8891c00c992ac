"""Portable table definitions (SQLAlchemy Core): SQLite today, PostgreSQL by URL later.

Timestamps are float epoch seconds everywhere; ids are autoincrement integers.
A change here needs a migration (store/migrations/versions) and `migrate.HEAD_REVISION`.
`events` is append-only and the source of truth; `runs` and `jobs` are projections of it.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

Timestamp = sa.Double

events = sa.Table(
    "events",
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
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
    metadata,
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

# Evidence a job produced (SARIF, test reports, coverage, gate decisions), by kind.
reports = sa.Table(
    "reports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("digest", sa.String, nullable=False),
    sa.Column("summary", sa.JSON, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Index("ix_reports_run_kind", "run_id", "kind"),
)

# --- Environments (deployment). `events` stays the source of truth: deploy history is read
# from it; these tables hold the desired state the release controller reconciles to.

# One row per environment: its persisted ports and what should be serving.
environments = sa.Table(
    "environments",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("admin_port", sa.Integer, nullable=False),
    sa.Column("live_release", sa.String),  # serving all traffic once a deploy is done
    sa.Column("warm_release", sa.String),  # the previous live release, kept running
    sa.Column("routes", sa.JSON, nullable=False),  # the desired route table
    sa.Column("generation", sa.Integer, nullable=False),  # bumped by each change of intent
    sa.Column("updated_at", Timestamp, nullable=False),
    # Samples older than this are downsampled already (store/ledger/samples.py).
    sa.Column("samples_pruned_before", Timestamp),
)

releases = sa.Table(
    "releases",
    metadata,
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
    metadata,
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

# The golden signals, sampled: cumulative router counters and saturation per release.
signal_samples = sa.Table(
    "signal_samples",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("release_id", sa.String, nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("signals", sa.JSON, nullable=False),
    sa.Column("saturation", sa.JSON),
    sa.Index("ix_signal_samples_release_ts", "environment", "release_id", "ts"),
    sa.Index("ix_signal_samples_environment_ts", "environment", "ts"),  # retention, by age
)

# --- Feature flags and segments, per environment (conveyor.flags). Each change bumps the
# environment's version (the largest `version` of its rows) and appends a flag event.
flags = sa.Table(
    "flags",
    metadata,
    sa.Column("environment", sa.String, primary_key=True),
    sa.Column("kind", sa.String, primary_key=True),  # "flag" or "segment"
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

# The audit log: a hash chain over the events that record decisions (gates, deploys,
# rollbacks, release commands, flag changes). Each entry commits to its event's content
# and to the entry before it, so an edited or deleted event or entry breaks the chain.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer, nullable=False, unique=True),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("actor", sa.String),
    sa.Column("event_digest", sa.String, nullable=False),
    sa.Column("prev_hash", sa.String, nullable=False),
    sa.Column("hash", sa.String, nullable=False),
)

# Heads of the audit chain signed with the project's key (service/audit.py), also kept in
# the state folder's audit-heads.jsonl: a chain rewritten whole no longer matches them.
audit_signed_heads = sa.Table(
    "audit_signed_heads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("entries", sa.Integer, nullable=False),
    sa.Column("head", sa.String, nullable=False),
    sa.Column("signed_at", Timestamp, nullable=False),
    sa.Column("key_id", sa.String, nullable=False),
    sa.Column("signature", sa.String, nullable=False),
)

# --- The server (conveyor server): its run queue, the forge deliveries it received, and
# browser sessions.

# Runs asked for but not started yet, and who started them: the server's queue survives a
# SIGKILL (a `claimed` entry whose owner died goes back to `queued`).
run_queue = sa.Table(
    "run_queue",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String, nullable=False),  # a QueueState value
    sa.Column("requested_at", Timestamp, nullable=False),
    sa.Column("pipeline", sa.String),  # known once planned
    sa.Column("repository", sa.String, nullable=False),  # a git repository holding the commit
    sa.Column("commit_sha", sa.String, nullable=False),
    sa.Column("branch", sa.String),
    sa.Column("trigger", sa.JSON, nullable=False),  # kind, forge, delivery, merge request...
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("options", sa.JSON, nullable=False),  # rerun_failed, only, parallelism
    sa.Column("run_id", sa.Integer),  # once the run is recorded
    sa.Column("claimed_at", Timestamp),
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String),
    sa.Column("pid_started", sa.BigInteger),  # the owner's start time (store/procs.py)
    sa.Column("finished_at", Timestamp),
    sa.Column("reason", sa.Text),
    sa.Index("ix_run_queue_state", "state", "id"),
)

# Every webhook delivery the server received, verified or not: replays are dropped by
# (forge, delivery_id), and admins see what was refused and why.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("forge", sa.String, nullable=False),
    sa.Column("delivery_id", sa.String),  # the forge's own id; None when it sent none
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("event", sa.String),
    sa.Column("outcome", sa.String, nullable=False),  # a DeliveryOutcome value
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("queue_id", sa.Integer),
    sa.Index("ix_webhook_deliveries_forge_delivery", "forge", "delivery_id"),
)

# Browser sessions: only a hash of the cookie's secret is kept.
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id_hash", sa.String, primary_key=True),
    sa.Column("user", sa.String, nullable=False),
    sa.Column("via", sa.String, nullable=False),  # token, oidc, login-link
    sa.Column("csrf", sa.String, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp),
)

# One-time login links (the first admin's, printed by `conveyor server`): hashed, used once.
login_links = sa.Table(
    "login_links",
    metadata,
    sa.Column("id_hash", sa.String, primary_key=True),
    sa.Column("user", sa.String, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("expires_at", Timestamp, nullable=False),
    sa.Column("used_at", Timestamp),
)

# The runs list filters by commit and pages by id; these keep it fast with 10,000s of runs.
sa.Index("ix_runs_commit_sha", runs.c.commit_sha)
sa.Index("ix_runs_branch_id", runs.c.branch, runs.c.id)
sa.Index("ix_runs_state_id", runs.c.state, runs.c.id)
sa.Index("ix_runs_pipeline_id", runs.c.pipeline, runs.c.id)  # migration 0005

# --- Observe: requirements filed from insights and incidents (observe/requirements.py),
# on the forge (`#12`) or as Markdown files (`REQ-7`), and the commit that addressed each.
requirements = sa.Table(
    "requirements",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key", sa.String, nullable=False, unique=True),  # what a commit references
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("source", sa.String, nullable=False, index=True),  # "insight:...", "incident:12"
    sa.Column("location", sa.Text, nullable=False),  # the URL, or the file's path
    sa.Column("filed_on", sa.String, nullable=False),  # github, gitlab, gitea... or markdown
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("filed_by", sa.String, nullable=False),
    sa.Column("filed_at", Timestamp, nullable=False),
    sa.Column("addressed_by", sa.String),  # the first commit that references its key
    sa.Column("addressed_at", Timestamp),  # that commit's time
    sa.Column("closed", sa.Boolean),  # whether that commit used a closing keyword
)
sa.Index("ix_events_kind_ts", events.c.kind, events.c.ts)  # DORA's one read (migration 0011)
# --- Observe (conveyor.observe).

# User feedback posted to an environment's router (observe/feedback.py): the release and
# the flag variants that served the user, the rating and the text; nothing that says who.
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("feedback_id", sa.String, nullable=False, unique=True),  # the router's id
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("release_id", sa.String),  # None: the router could not tell
    sa.Column("route", sa.String, nullable=False),  # how the router knew the release
    sa.Column("variants", sa.JSON, nullable=False),  # flag -> variant, checked on ingest
    sa.Column("rating", sa.Integer, nullable=False),  # 1..5
    sa.Column("text", sa.Text, nullable=False),
    sa.Index("ix_feedback_environment_id", "environment", "id"),
    sa.Index("ix_feedback_environment_release", "environment", "release_id"),
)

# Alerts acted on (observe/alerts.py): one row per firing alert that rolled back or
# opened/joined an incident; a fingerprint with an unresolved row here is a duplicate.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("release_id", sa.String),  # the live release the decision was about
    sa.Column("source", sa.String, nullable=False),
    sa.Column("alertname", sa.String),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("annotations", sa.JSON, nullable=False),
    sa.Column("starts_at", Timestamp, nullable=False),
    sa.Column("received_at", Timestamp, nullable=False),
    sa.Column("outcome", sa.String, nullable=False),  # an AlertOutcome value
    sa.Column("reason", sa.Text),
    sa.Column("incident_id", sa.Integer),
    sa.Column("resolved_at", Timestamp),
    sa.Column("duplicates", sa.Integer, nullable=False, server_default="0"),
    sa.Column("duplicate_noted_at", Timestamp),  # the last duplicate recorded as an event
    sa.Index("ix_alerts_fingerprint", "fingerprint", "id"),
    sa.Index("ix_alerts_environment", "environment", "id"),
)

# Incidents (observe/incidents.py) and their timelines.
incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("state", sa.String, nullable=False),  # an IncidentState value
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),  # the first alert's start
    sa.Column("opened_at", Timestamp, nullable=False),
    sa.Column("acknowledged_at", Timestamp),
    sa.Column("mitigated_at", Timestamp),
    sa.Column("resolved_at", Timestamp),
    sa.Column("suspects", sa.JSON, nullable=False),
    sa.Column("flag_changes", sa.JSON, nullable=False),
    sa.Column("time_to_detect", sa.Double),
    sa.Column("time_to_restore", sa.Double),
    sa.Column("requirement", sa.JSON),
    sa.Index("ix_incidents_environment_state", "environment", "state"),
)

incident_timeline = sa.Table(
    "incident_timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", sa.Integer, nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Column("entry", sa.String, nullable=False),  # opened, acknowledged, ..., alert, note
    sa.Column("actor", sa.String, nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_incident_timeline_incident", "incident_id", "id"),
)

# Business counters per release replica (observe/business.py, migration 0010): each row
# one scrape of one series, its raw cumulative value (null: the series or the replica did
# not answer, `outcome` says which); increases, resets included, are computed on reading.
business_samples = sa.Table(
    "business_samples",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("environment", sa.String, nullable=False),
    sa.Column("release_id", sa.String, nullable=False),
    sa.Column("replica", sa.String, nullable=False),  # its address
    sa.Column("restarts", sa.Integer, nullable=False),  # a change is a counter reset
    sa.Column("metric", sa.String, nullable=False),  # the name in conveyor.yml
    sa.Column("flag", sa.String, nullable=False),  # "" for the release's total
    sa.Column("variant", sa.String, nullable=False),
    sa.Column("value", sa.Double),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("ts", Timestamp, nullable=False),
    sa.Index("ix_business_samples_env_ts", "environment", "ts"),
)

# Contracts (steps/contract.py, service/contracts.py, migration 0012): the pacts a
# consumer's run recorded (the pact file itself is a blob, also a "pact" report of the
# run), and each verification of one pact by one provider run, with the interactions
# that failed (empty when it passed).
pacts = sa.Table(
    "pacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("consumer", sa.String, nullable=False),
    sa.Column("provider", sa.String, nullable=False),
    sa.Column("consumer_version", sa.String, nullable=False),  # the run's commit
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("digest", sa.String, nullable=False),  # the pact file's blob
    sa.Column("interactions", sa.JSON, nullable=False),  # their descriptions
    sa.Column("ts", Timestamp, nullable=False),
    sa.Index("ix_pacts_consumer_provider", "consumer", "provider", "run_id"),
)

pact_verifications = sa.Table(
    "pact_verifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("provider", sa.String, nullable=False),
    sa.Column("provider_version", sa.String, nullable=False),  # the verifying run's commit
    sa.Column("run_id", sa.Integer, nullable=False),
    sa.Column("job_id", sa.String, nullable=False),
    sa.Column("consumer", sa.String, nullable=False),
    sa.Column("consumer_version", sa.String, nullable=False),
    sa.Column("pact_digest", sa.String, nullable=False),
    sa.Column("environment", sa.String, nullable=False),  # where that consumer version runs
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("failures", sa.JSON, nullable=False),  # [{interaction, mismatch}]
    sa.Column("ts", Timestamp, nullable=False),
    sa.Index("ix_pact_verifications_provider", "provider", "run_id"),
)
