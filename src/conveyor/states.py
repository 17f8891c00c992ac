"""Explicit states for runs and jobs, and the only transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"  # Ctrl-C or superseded: stopped on purpose
    INTERRUPTED = "interrupted"  # the conveyor process died (SIGKILL, power loss)

    @property
    def finished(self) -> bool:
        return self is not RunState.RUNNING


class JobState(StrEnum):
    PENDING = "pending"  # planned, waiting for its needs
    WAITING = "waiting"  # needs done, queued on a concurrency group
    RUNNING = "running"
    SUCCESS = "success"
    CACHED = "cached"  # outputs restored from the content-addressed cache
    FAILED = "failed"
    SKIPPED = "skipped"  # its rules did not match this commit
    BLOCKED = "blocked"  # a job it needs failed, was skipped or cancelled
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"  # a newer run took its place in the concurrency queue
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self not in _UNFINISHED_JOB_STATES

    @property
    def succeeded(self) -> bool:
        """Dependants may run after this state."""
        return self in (JobState.SUCCESS, JobState.CACHED)


_UNFINISHED_JOB_STATES = frozenset({JobState.PENDING, JobState.WAITING, JobState.RUNNING})

_JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset(
        {
            JobState.WAITING,
            JobState.RUNNING,
            JobState.CACHED,
            JobState.FAILED,  # a cache hit whose never-cached gate then blocked
            JobState.SKIPPED,
            JobState.BLOCKED,
            JobState.CANCELLED,
            JobState.INTERRUPTED,
        }
    ),
    JobState.WAITING: frozenset(
        {
            JobState.FAILED,
            JobState.RUNNING,
            JobState.CACHED,
            JobState.CANCELLED,
            JobState.SUPERSEDED,
            JobState.INTERRUPTED,
        }
    ),
    JobState.RUNNING: frozenset(
        {
            JobState.RUNNING,  # a retry attempt
            JobState.SUCCESS,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.INTERRUPTED,
        }
    ),
}


def can_transition(old: JobState, new: JobState) -> bool:
    return new in _JOB_TRANSITIONS.get(old, frozenset())


class FailureClass(StrEnum):
    """Why an attempt failed; `retry.on` selects which of these are retried."""

    EXIT_CODE = "exit_code"  # the command ran and exited non-zero
    TIMEOUT = "timeout"  # killed after its timeout
    INFRASTRUCTURE = "infrastructure"  # could not start, executor or workspace error


class DeployState(StrEnum):
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # never took all traffic; the previous release kept serving
    ROLLED_BACK = "rolled_back"  # took traffic, then a smoke test or a person sent it back

    @property
    def finished(self) -> bool:
        return self is not DeployState.IN_PROGRESS


class ReleaseState(StrEnum):
    STARTING = "starting"  # replicas starting, or ready with no share of traffic yet
    # Ready and taking a share of traffic before the deploy confirms it: a canary and its
    # baseline, a new release while traffic moves to it replica by replica.
    SERVING = "serving"
    LIVE = "live"  # serves the environment
    WARM = "warm"  # the previous live release: running, no traffic, rollback target
    RETIRED = "retired"  # stopped
    FAILED = "failed"  # never became ready, or rolled back; stopped
    STOPPED = "stopped"  # live or warm until `conveyor env stop`; `env reconcile` restarts it
