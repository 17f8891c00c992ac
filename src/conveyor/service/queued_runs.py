"""The server's run queue as use cases: queue a run of a commit, queue a rerun of a run's
failed jobs, run a queued entry with the engine, cancel a run.

A queued entry names a commit of a git repository (the project's checkout, or a mirror
of the forge's repository); its run reads the pipeline file of that commit, records the
entry's trigger as the run's, and is otherwise exactly a `conveyor run`.
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.engine.report import Reporter, SilentReporter
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service.project import Project
from conveyor.service.runs import CommitSource, RunOptions, execute_run, prune_workspaces
from conveyor.states import RunState
from conveyor.store import queue
from conveyor.store.procs import ProcessIdentity, is_dead_here, this_process
from conveyor.store.store import Store
from conveyor.vcs.git import repo_root, resolve_revision


@dataclass(frozen=True)
class RunRequest:
    """What a person asks the server to run (`POST /api/v1/runs`)."""

    commit: str | None = None  # a sha, branch or tag; None: the checkout's HEAD
    branch: str | None = None  # None: the branch `commit` names, or the checked-out one
    jobs: tuple[str, ...] = ()
    parallelism: int | None = None


def queue_run(store: Store, project: Project, request: RunRequest, actor: str) -> int:
    """Queue a run of a commit of the project's repository; returns the queue entry's id."""
    repository = _repository_of(project.directory)
    sha, named = resolve_revision(repository, request.commit or "HEAD")
    branch = request.branch or named
    options: dict[str, Any] = {}
    if request.jobs:
        options["only"] = list(request.jobs)
    if request.parallelism:
        options["parallelism"] = request.parallelism
    entry = queue.NewQueued(
        repository=str(repository),
        commit_sha=sha,
        branch=branch,
        trigger={"kind": "api"},
        actor=actor,
        options=options,
    )
    return queue.enqueue(store.engine, entry)


@functools.cache
def _repository_of(directory: Path) -> Path:
    """The top level of the project's repository (asked of git once per process)."""
    return repo_root(directory)


def queue_rerun_failed(store: Store, project: Project, run_id: int, actor: str) -> int:
    """Queue a rerun of run `run_id`'s failed jobs and their dependants, on its commit and
    from the repository it came from, as `conveyor run --rerun-failed RUN` does."""
    run = store.get_run(run_id)
    if run.state is RunState.RUNNING:
        raise ConveyorError(
            f"run {run_id} is still running", hint="wait for it to end, or cancel it first"
        )
    if run.commit_sha is None:
        raise ConveyorError(f"run {run_id} recorded no commit")
    earlier = queue.for_run(store.engine, run_id)
    repository = earlier.repository if earlier else str(_repository_of(project.directory))
    options: dict[str, Any] = {"rerun_failed": run_id}
    if run.parallelism:
        options["parallelism"] = run.parallelism
    entry = queue.NewQueued(
        repository=repository,
        commit_sha=run.commit_sha,
        branch=run.branch,
        trigger={"kind": "rerun-failed", "rerun_of": run_id},
        actor=actor,
        options=options,
    )
    return queue.enqueue(store.engine, entry)


def run_options(entry: queue.QueuedRun, prefix: str | None = None) -> RunOptions:
    """The `conveyor run` an entry stands for (`prefix`: where the project's folder is in
    its repository, when the caller knows it already)."""
    options = entry.options
    return RunOptions(
        parallelism=options.get("parallelism"),
        rerun_failed=options.get("rerun_failed"),
        only=tuple(options.get("only", ())),
        use_cache=bool(options.get("use_cache", True)),
        actor=entry.actor,
        commit=CommitSource(Path(entry.repository), entry.commit_sha, entry.branch, prefix),
        trigger={**entry.trigger, "queue_id": entry.id},
        prune=False,  # after the entry is finished: not on the time to a result
    )


def run_queued(
    project: Project,
    queue_id: int,
    *,
    prefix: str | None = None,
    reporter: Reporter | None = None,
) -> None:
    """Run a claimed entry in this process (the server forks one per run), record its run
    on the entry as soon as it exists, and finish the entry when the run ends."""
    with (
        Store(project.state_dir, project.database_url) as store,
        queue.held_by_this_process(store.engine, queue_id),
    ):
        engine = store.engine
        queue.take_over(engine, queue_id, this_process())
        entry = queue.get(engine, queue_id)
        if entry is None:
            raise NotFoundError(f"no queued run {queue_id}")

        def recorded(run_id: int) -> None:
            queue.set_run(engine, queue_id, run_id, store.get_run(run_id).pipeline)

        try:
            outcome = execute_run(
                project,
                run_options(entry, prefix),
                reporter or SilentReporter(),
                on_recorded=recorded,
                store=store,
            )
        except KeyboardInterrupt:
            _finish_interrupted(engine, queue_id)
        except ConveyorError as error:
            _finish_failed(engine, queue_id, error.message)
        else:
            queue.finish(
                engine,
                queue_id,
                queue.QueueState.DONE,
                f"run {outcome.run_id} {outcome.state.value}",
            )
        finally:
            prune_workspaces(project)


def _finish_interrupted(engine: Any, queue_id: int) -> None:
    entry = queue.get(engine, queue_id)
    if entry is not None and entry.run_id is not None:
        queue.finish(engine, queue_id, queue.QueueState.DONE, f"run {entry.run_id} cancelled")
    else:
        queue.finish(engine, queue_id, queue.QueueState.CANCELLED, "cancelled before it started")


def _finish_failed(engine: Any, queue_id: int, message: str) -> None:
    entry = queue.get(engine, queue_id)
    prefix = f"run {entry.run_id} failed: " if entry and entry.run_id else "not started: "
    queue.finish(engine, queue_id, queue.QueueState.DONE, prefix + message)


def settle_abandoned(store: Store, project: Project, queue_id: int, exit_code: int | None) -> bool:
    """After an entry's process ended: if it left the entry claimed (it was killed), mark its
    run interrupted and the entry done. Returns whether there was anything to settle."""
    entry = queue.get(store.engine, queue_id)
    if entry is None or entry.state is not queue.QueueState.CLAIMED:
        return False
    project.recover(store)  # its run, if still marked running, becomes interrupted
    what = f"run {entry.run_id}" if entry.run_id else "not started"
    queue.finish(
        store.engine,
        queue_id,
        queue.QueueState.DONE,
        f"{what}: its process ended without finishing the entry (exit code {exit_code})",
    )
    return True


class NotRunningError(ConveyorError):
    """The run is not running (any more), or not where it can be signalled from here."""


def interrupt_run(store: Store, run_id: int) -> ProcessIdentity:
    """Cancel a running run like Ctrl-C: SIGINT to the process recording it, on this host.
    The run records itself cancelled; returns the process signalled."""
    store.get_run(run_id)  # NotFoundError for an unknown run
    owner = queue.run_owner(store.engine, run_id)
    if owner is None:
        raise NotRunningError(f"run {run_id} is not running")
    if is_dead_here(owner.pid, owner.host, owner.started):
        raise NotRunningError(f"run {run_id}'s process is gone; it is being marked interrupted")
    if owner.host != this_process().host:
        raise NotRunningError(
            f"run {run_id} runs on {owner.host}", hint="cancel it on the host that runs it"
        )
    os.kill(owner.pid, signal.SIGINT)
    return owner


def entry_json(entry: queue.QueuedRun) -> Mapping[str, Any]:
    """A queue entry as the API answers it."""
    return {
        "queue_id": entry.id,
        "state": entry.state.value,
        "run_id": entry.run_id,
        "pipeline": entry.pipeline,
        "repository": entry.repository,
        "commit": entry.commit_sha,
        "branch": entry.branch,
        "trigger": dict(entry.trigger),
        "actor": entry.actor,
        "options": dict(entry.options),
        "requested_at": entry.requested_at,
        "claimed_at": entry.claimed_at,
        "finished_at": entry.finished_at,
        "reason": entry.reason,
    }
