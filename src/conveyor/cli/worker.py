"""`conveyor worker`: a Celery worker that runs the jobs of `executor: celery` (docs/scaling.md)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.output import console, examples
from conveyor.errors import ConveyorError

QUEUE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
QueuesOption = typer.Option("--queues", "-Q", help="Comma-separated queues to take jobs from.")
ConcurrencyOption = typer.Option("--concurrency", "-c", min=1, help="Jobs run side by side.")
FolderOption = typer.Option("--folder", help="Where this worker keeps its clones and job folders.")
NameOption = typer.Option("--name", help="This worker's name (default: worker-PID@host).")
VisibilityOption = typer.Option(
    "--visibility-timeout",
    help="Seconds before the broker hands an unacknowledged job to another worker; "
    "keep it above the longest job's timeout.",
)
NewKeyOption = typer.Option(
    "--new-key", help="Write a new shared key to this file (mode 0600) and exit."
)


def register(app: typer.Typer) -> None:
    app.command(
        "worker",
        epilog=examples(
            ("conveyor worker --new-key ~/.conveyor-worker.key", "make the shared key once"),
            ("conveyor worker --queues default,podman", "take jobs of two queues"),
            ("conveyor worker -Q default -c 4 --folder /var/lib/conveyor-worker", "4 at once"),
        ),
    )(worker)


def worker(
    queues: Annotated[str, QueuesOption] = "default",
    concurrency: Annotated[int, ConcurrencyOption] = 1,
    folder: Annotated[Path, FolderOption] = Path("conveyor-worker"),
    name: Annotated[str | None, NameOption] = None,
    visibility_timeout: Annotated[float | None, VisibilityOption] = None,
    new_key: Annotated[Path | None, NewKeyOption] = None,
) -> None:
    """Run jobs of `executor: celery` from a Redis broker (Celery), until stopped.

    Reads CONVEYOR_BROKER_URL (redis://HOST:PORT/DB), CONVEYOR_ARTIFACTS (a registry,
    http://HOST:PORT, or an OCI layout folder, oci:/PATH) and the key shared with the
    runs (CONVEYOR_WORKER_KEY, or a file named by CONVEYOR_WORKER_KEY_FILE). A job's
    commit is cloned from its repository URL into --folder; its files travel through the
    artifact store."""
    from conveyor.engine.workers.sealing import new_key as make_key

    if new_key is not None:
        _write_key(new_key, make_key())
        console.print(f"wrote a new worker key to {new_key}")
        return
    wanted = _queues(queues)
    from conveyor.engine.workers.celery_app import make_app, route
    from conveyor.engine.workers.runtime import WorkerRuntime
    from conveyor.engine.workers.settings import DEFAULT_VISIBILITY_TIMEOUT, WorkerSettings

    settings = WorkerSettings.from_env()
    timeout = visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT
    if timeout <= 0:
        raise ConveyorError("--visibility-timeout must be a positive number of seconds")
    label = name or f"worker-{os.getpid()}"
    runtime = WorkerRuntime(folder.resolve(), settings, label, visibility_timeout=timeout)
    app = make_app(settings.broker_url, visibility_timeout=timeout)
    route(app, runtime.handle)
    console.print(f"worker {label}: queues {', '.join(wanted)}, {concurrency} at a time")
    app.worker_main(
        [
            "worker",
            "--queues", ",".join(wanted),
            "--concurrency", str(concurrency),
            "--pool", "threads",
            "--hostname", f"{label}@{socket.gethostname()}",
            "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
    )  # fmt: skip


def _queues(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    bad = [name for name in names if not QUEUE.match(name)]
    if not names or bad:
        raise ConveyorError(
            f"--queues: {', '.join(map(repr, bad)) or 'no queue'} is not a queue name",
            hint="lower-case letters, digits, '.', '_' and '-', comma-separated: default,podman",
        )
    return names


def _write_key(path: Path, key: bytes) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConveyorError(f"{path} exists: a key is never overwritten") from None
    except OSError as error:
        raise ConveyorError(f"cannot write {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "wb") as file:
        file.write(key + b"\n")
