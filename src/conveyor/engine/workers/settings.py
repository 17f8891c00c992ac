"""Where the broker, the artifact store and the shared key are: read from the environment.

The run's side (`executor: celery`) and `conveyor worker` read the same variables, so one
exported set of them configures both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError

BROKER_VAR = "CONVEYOR_BROKER_URL"
ARTIFACTS_VAR = "CONVEYOR_ARTIFACTS"
KEY_VAR = "CONVEYOR_WORKER_KEY"
KEY_FILE_VAR = "CONVEYOR_WORKER_KEY_FILE"
PICKUP_VAR = "CONVEYOR_PICKUP_TIMEOUT"
LEASE_VAR = "CONVEYOR_WORKER_LEASE"
# Above the default job timeout (1 h) with a margin: the broker redelivers an unacked
# task only after this, so it must never cut a running job short.
DEFAULT_VISIBILITY_TIMEOUT = 3600.0 + 600.0
DEFAULT_PICKUP_TIMEOUT = 120.0
DEFAULT_LEASE = 10.0


@dataclass(frozen=True)
class WorkerSettings:
    broker_url: str  # redis://host:port/db
    artifacts: str  # a registry (http://host:port) or an OCI layout folder (oci:/path)
    key: bytes  # the Fernet key shared by the run's side and the workers
    pickup_timeout: float = DEFAULT_PICKUP_TIMEOUT  # how long a job waits for a worker
    lease: float = DEFAULT_LEASE  # a worker's claim on an attempt lapses this long after it dies

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        return cls(
            broker_url=_required(env, BROKER_VAR, "redis://127.0.0.1:6379/0"),
            artifacts=_required(env, ARTIFACTS_VAR, "http://127.0.0.1:5000"),
            key=read_key(env),
            pickup_timeout=_seconds(env, PICKUP_VAR, DEFAULT_PICKUP_TIMEOUT),
            lease=_seconds(env, LEASE_VAR, DEFAULT_LEASE),
        )


def read_key(env: Mapping[str, str]) -> bytes:
    if env.get(KEY_VAR):
        return env[KEY_VAR].encode()
    path = env.get(KEY_FILE_VAR)
    if not path:
        raise ConveyorError(
            f"no worker key: set {KEY_VAR} or {KEY_FILE_VAR}",
            hint="`conveyor worker --new-key FILE` writes one; give the same key to the "
            "workers and to the runs that send them jobs",
        )
    try:
        return Path(path).read_bytes().strip()
    except OSError as error:
        raise ConveyorError(f"cannot read the worker key {path}: {error.strerror}") from None


def _required(env: Mapping[str, str], name: str, example: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConveyorError(
            f"{name} is not set: jobs with `executor: celery` need it",
            hint=f"export {name}={example}",
        )
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConveyorError(f"{name}={text!r} is not a positive number of seconds")
    return value
