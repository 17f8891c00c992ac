"""The process each queued run runs in, forked from a fork server that has already
imported the run path: a run pays neither an interpreter's start-up nor the imports
(about 0.5 s of a `conveyor run`), and runs in the main thread of a process of its own,
where the engine handles SIGINT and SIGTERM as `conveyor run` does.

The fork server is started once, from the server, and imports `run_preload.py` (the run
path and the steps); a run is one `fork` of it.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

from conveyor.service.project import Project

_context: ForkServerContext = multiprocessing.get_context("forkserver")
# What the fork server imports before it forks anything (that module imports this one).
_context.set_forkserver_preload(["conveyor.server.run_preload"])


def start_fork_server() -> None:
    """Start the fork server now (it imports the run path, about 0.5 s), not at the
    first run."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def start(project: Project, queue_id: int, prefix: str | None) -> BaseProcess:
    """A process running queue entry `queue_id`, started (`prefix`: the project's folder
    inside its repository, found once by the server)."""
    process = _context.Process(
        target=run_entry,
        args=(project, queue_id, dict(os.environ), prefix),
        name=f"conveyor-run-queue-{queue_id}",
    )
    process.start()
    return process


def run_entry(project: Project, queue_id: int, environ: dict[str, str], prefix: str | None) -> None:
    """In the forked process: the server's environment of now (the fork server's is that
    of when it started), the project's folder, then the run."""
    # The imports' objects are never garbage: the collector need not walk them (as the
    # CLI's main does), and a forked page not written stays shared.
    gc.freeze()
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(project.directory)
    from conveyor.service.queued_runs import run_queued

    run_queued(project, queue_id, prefix=prefix)
