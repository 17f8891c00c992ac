"""The job message, the result, and the Redis keys one attempt uses.

An attempt has an id (the run's side makes one per command it sends); every delivery of
it to a worker has its own id. A worker claims the attempt (`SET NX` with a lease it
renews while it works), so two deliveries never run side by side; the first completion
is written with `SET NX`, so only one counts; its files are stored under its delivery id
and the result names them by digest, so half-written files of a delivery that died are
never read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

TASK_NAME = "conveyor.run_job"
KEY_PREFIX = "conveyor:attempt:"
# How long the records of an attempt stay in Redis after it was sent.
RECORD_TTL_SECONDS = 24 * 3600
# A log stream entry with this field (instead of a line) says the result is written.
END_FIELD = "end"
LINE_FIELD = "d"


@dataclass(frozen=True)
class JobMessage:
    """What a worker needs to run one command of a job (sealed in the task)."""

    attempt: str
    job_id: str
    repository: str  # a URL git can clone
    commit: str
    prefix: str  # the project's folder inside the repository ("" at its root)
    argv: list[str]
    cwd: str  # relative to the project's folder
    env: dict[str, str]  # only what differs from a plain environment (job env, secrets)
    timeout: float | None
    kill_grace: float
    inputs: str | None  # artifact digest: files of the run's workspace not in the commit
    run_root: str  # the run's checkout root, replaced by the worker's in argv and env

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobMessage:
        return cls(**data)


@dataclass(frozen=True)
class JobResult:
    delivery: str
    worker: str
    exit_code: int | None
    failure: str | None  # a FailureClass value
    duration: float
    detail: str
    outputs: str | None  # artifact digest of the files the command created or changed
    extra: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        return cls(**data)


def claim_key(attempt: str) -> str:
    return f"{KEY_PREFIX}{attempt}:claim"


def result_key(attempt: str) -> str:
    return f"{KEY_PREFIX}{attempt}:result"


def log_key(attempt: str) -> str:
    return f"{KEY_PREFIX}{attempt}:log"


def cancel_key(attempt: str) -> str:
    return f"{KEY_PREFIX}{attempt}:cancel"
