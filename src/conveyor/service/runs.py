"""Start a pipeline run: load, plan, record, prepare the workspace, schedule, finish.

Cancellation (Ctrl-C, SIGTERM) is recorded before the exception leaves; a SIGKILL is
found by the next command (`Store.recover_interrupted`) and the next run reuses every
finished job through the cache.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conveyor.engine.executors import EXECUTORS
from conveyor.engine.mask import Masker
from conveyor.engine.plan import Plan, PlanOptions, PlanStatus, build_plan
from conveyor.engine.report import Reporter
from conveyor.engine.runner import JobRunner, RunContext
from conveyor.engine.schedule import Scheduler
from conveyor.engine.secrets import available_secrets, load_secrets, without_secrets
from conveyor.engine.workspace import (
    Workspace,
    prepare_commit_workspace,
    prepare_workspace,
    restore_outputs,
)
from conveyor.errors import ConveyorError
from conveyor.findings.sarif import merge_logs
from conveyor.service.project import Project
from conveyor.service.step_environments import ProjectEnvironments
from conveyor.spec.loader import LoadedPipeline, load_pipeline, parse_pipeline
from conveyor.states import JobState, RunState
from conveyor.steps.registry import STEP_PARAMS, STEPS
from conveyor.store.records import NewJob, NewRun
from conveyor.store.store import Store
from conveyor.vcs.git import (
    GitContext,
    current_branch,
    read_commit_context,
    read_file_at,
    read_git_context,
    remote_url,
    repo_root,
)

KEEP_WORKSPACES = 5


@dataclass(frozen=True)
class CommitSource:
    """A commit to run that need not be the checkout's HEAD (the server's runs): any
    repository holding it, a checkout or a bare mirror, with the project at the same
    place inside it as in the project's own checkout. The pipeline file is the commit's."""

    repository: Path
    sha: str
    branch: str | None
    prefix: str | None = None  # the project's folder in it; None: read from the checkout


@dataclass(frozen=True)
class RunOptions:
    spec: Path | None = None
    parallelism: int | None = None
    allow_dirty: bool = False
    rerun_failed: int | None = None
    only: tuple[str, ...] = ()
    use_cache: bool = True
    actor: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. the demo's PATH
    commit: CommitSource | None = None  # None: HEAD of the project's checkout
    # False: the caller removes old workspaces itself (`prune_workspaces`), after the run
    prune: bool = True
    trigger: Mapping[str, Any] | None = None  # None: manual, or rerun-failed


@dataclass(frozen=True)
class RunOutcome:
    run_id: int
    state: RunState
    jobs: dict[str, JobState]


def default_actor() -> str:
    return os.environ.get("CONVEYOR_ACTOR") or getpass.getuser()


def prepare_plan(
    project: Project, store: Store, options: RunOptions
) -> tuple[LoadedPipeline, GitContext, Plan]:
    """Everything up to the plan, shared by `run` and `plan --explain`."""
    commit = options.commit
    loaded = (
        load_pipeline(project.spec_path, steps=STEP_PARAMS)
        if commit is None
        else _load_commit_pipeline(project, commit)
    )
    name = loaded.pipeline.name or project.directory.name
    git = (
        read_project_git(project, store, name)
        if commit is None
        else _read_commit_git(project, store, name, commit)
    )
    rerun = _rerun_set(store, options.rerun_failed, git) if options.rerun_failed else None
    plan = build_plan(
        loaded.pipeline,
        loaded.step_params,
        git,
        name=name,
        steps=STEPS,
        options=PlanOptions(only=options.only, rerun=rerun),
    )
    return loaded, git, plan


def read_project_git(project: Project, store: Store, pipeline: str) -> GitContext:
    root = repo_root(project.directory)
    last = store.last_successful_run(pipeline, current_branch(root))
    git = read_git_context(root, since=last.commit_sha if last else None)
    return _relative_to_project(git, root, project.directory)


def project_prefix(project: Project) -> str:
    """Where the project's folder is inside its repository ("." at the top level)."""
    root = repo_root(project.directory)
    return project.directory.resolve().relative_to(root.resolve()).as_posix()


def _prefix_of(project: Project, commit: CommitSource) -> str:
    return commit.prefix if commit.prefix is not None else project_prefix(project)


def _load_commit_pipeline(project: Project, commit: CommitSource) -> LoadedPipeline:
    prefix = _prefix_of(project, commit)
    path = project.spec_path.name if prefix == "." else f"{prefix}/{project.spec_path.name}"
    text = read_file_at(commit.repository, commit.sha, path)
    if text is None:
        raise ConveyorError(
            f"commit {commit.sha[:12]} of {commit.repository} has no {path}",
            hint="the server runs the pipeline file of the commit it runs",
        )
    return parse_pipeline(text, f"{path} at {commit.sha[:12]}", steps=STEP_PARAMS)


def _read_commit_git(
    project: Project, store: Store, pipeline: str, commit: CommitSource
) -> GitContext:
    last = store.last_successful_run(pipeline, commit.branch)
    git = read_commit_context(
        commit.repository,
        commit.sha,
        branch=commit.branch,
        since=last.commit_sha if last else None,
    )
    return _inside_prefix(git, _prefix_of(project, commit))


def _relative_to_project(git: GitContext, root: Path, directory: Path) -> GitContext:
    """Changed paths relative to the folder holding conveyor.yml (monorepo projects)."""
    return _inside_prefix(git, directory.resolve().relative_to(root.resolve()).as_posix())


def _inside_prefix(git: GitContext, prefix: str) -> GitContext:
    if prefix == "." or git.changed_files is None:
        return git
    inside = tuple(p[len(prefix) + 1 :] for p in git.changed_files if p.startswith(prefix + "/"))
    return replace(git, changed_files=inside)


def _rerun_set(store: Store, run_id: int, git: GitContext) -> frozenset[str]:
    previous = store.get_run(run_id)
    if previous.commit_sha != git.sha:
        raise ConveyorError(
            f"run {run_id} was for commit {(previous.commit_sha or '?')[:12]},"
            f" HEAD is {git.sha[:12]}",
            hint="--rerun-failed reruns a run of the current commit; use `conveyor run`"
            " (unchanged jobs come from the cache anyway)",
        )
    return frozenset(
        job.job_id
        for job in store.get_jobs(run_id)
        if job.state not in (JobState.SUCCESS, JobState.CACHED, JobState.SKIPPED)
    )


def execute_run(
    project: Project,
    options: RunOptions,
    reporter: Reporter,
    *,
    on_recorded: Callable[[int], None] | None = None,
    store: Store | None = None,
) -> RunOutcome:
    """Run the pipeline; `on_recorded` hears the run's id as soon as it is in the store.
    `store`: the project's store, already open (kept open); None: opened and closed here."""
    project.ensure_state_dir()
    with ExitStack() as opened:
        if store is None:
            store = opened.enter_context(Store(project.state_dir, project.database_url))
        project.recover(store)
        loaded, git, plan = prepare_plan(project, store, options)
        if git.dirty and not options.allow_dirty:
            raise ConveyorError(
                "the working tree has uncommitted changes",
                hint="commit them, or pass --allow-dirty to run on the tree as it is",
            )
        secrets = _secrets_for(plan, project)
        masker = Masker([*secrets.values(), *_environment_values(loaded, project)])
        # Before anything is recorded: no event, detail or report holds them in clear.
        store.mask_secrets(masker)
        run_id = _record_run(store, plan, git, options)
        if on_recorded is not None:
            on_recorded(run_id)
        return _run_recorded(
            project,
            store,
            loaded=loaded,
            git=git,
            plan=plan,
            run_id=run_id,
            secrets=secrets,
            masker=masker,
            options=options,
            reporter=reporter,
        )


def _environment_values(loaded: LoadedPipeline, project: Project) -> list[str]:
    """Every environment's secret values that are set here: masked in the run's logs
    and records too, since a test job may print what a replica answered."""
    return [
        value
        for name, environment in loaded.pipeline.environments.items()
        for value in available_secrets(
            environment.secrets, root=project.directory, environ=os.environ, environment=name
        ).values()
    ]


def _secrets_for(plan: Plan, project: Project) -> dict[str, str]:
    found: dict[str, str] = {}
    for job in plan.runnable():
        if job.job.secrets:
            found.update(
                load_secrets(
                    job.job.secrets, root=project.directory, environ=os.environ, job=job.id
                )
            )
    return found


def _record_run(store: Store, plan: Plan, git: GitContext, options: RunOptions) -> int:
    parallelism = options.parallelism or os.cpu_count() or 1
    trigger: Mapping[str, object] = {"kind": "manual"}
    if options.rerun_failed:
        trigger = {"kind": "rerun-failed", "rerun_of": options.rerun_failed}
    if options.trigger is not None:
        trigger = options.trigger
    run = NewRun(
        pipeline=plan.pipeline,
        commit_sha=git.sha,
        branch=git.branch,
        tag=git.tag,
        author=f"{git.author_name} <{git.author_email}>",
        message=git.message,
        committed_at=git.committed_at.timestamp(),
        actor=options.actor or default_actor(),
        trigger=trigger,
        parallelism=parallelism,
    )
    jobs = [
        NewJob(
            job_id=job.id,
            name=job.name,
            matrix=job.matrix,
            plan_status=job.status.value,
            reason=job.reason,
            needs=list(job.needs),
        )
        for job in plan.jobs
    ]
    return store.create_run(run, jobs)


def _run_recorded(
    project: Project,
    store: Store,
    *,
    loaded: LoadedPipeline,
    git: GitContext,
    plan: Plan,
    run_id: int,
    secrets: dict[str, str],
    masker: Masker,
    options: RunOptions,
    reporter: Reporter,
) -> RunOutcome:
    run_dir = project.run_dir(run_id)
    try:
        workspace = _prepare_workspace(project, git, run_dir / "workspace", options)
        context = RunContext(
            run_id=run_id,
            pipeline=plan.pipeline,
            store=store,
            workspace=workspace,
            logs_dir=run_dir / "logs",
            base_env=_base_env(run_id, git, workspace.path, options, _secret_names(loaded, plan))
            | _state_env(project, plan, git),
            secrets=secrets,
            masker=masker,
            reporter=reporter,
            executors={name: backend() for name, backend in EXECUTORS.items()},
            steps=STEPS,
            default_timeout=loaded.pipeline.defaults.timeout,
            default_retry=loaded.pipeline.defaults.retry,
            gates=loaded.pipeline.gates,
            images=loaded.pipeline.images,
            use_cache=options.use_cache,
            branch=git.branch,
            environments=ProjectEnvironments(
                project, run_id=run_id, actor=options.actor or default_actor()
            ),
        )
        runner = JobRunner(context)
        reporter.run_started(run_id, plan)
        try:
            _settle_unscheduled(runner, plan, options)
            states = _drive(Scheduler(plan, runner, context_parallelism(options)))
        finally:
            context.states.close()  # every job's state written before the run's
    except BaseException as error:
        _finish_abnormally(store, run_id, error)
        reporter.run_finished(run_id, _abnormal_state(error))
        raise
    finally:
        if options.prune:
            prune_workspaces(project)
    final = _final_state(plan, states)
    _store_merged_sarif(store, run_id)
    store.set_run_state(run_id, final)
    reporter.run_finished(run_id, final)
    return RunOutcome(run_id=run_id, state=final, jobs=states)


def _prepare_workspace(
    project: Project, git: GitContext, destination: Path, options: RunOptions
) -> Workspace:
    if options.commit is not None:
        prefix = _prefix_of(project, options.commit)
        return prepare_commit_workspace(git.root, prefix, git.sha, destination)
    return prepare_workspace(
        git.root,
        project.directory,
        git.sha,
        destination,
        uncommitted=options.allow_dirty and git.dirty,
    )


def context_parallelism(options: RunOptions) -> int:
    return options.parallelism or os.cpu_count() or 1


def _final_state(plan: Plan, states: dict[str, JobState]) -> RunState:
    """SUCCESS unless a job did not get through; CANCELLED when a newer run took its place.

    Jobs the plan skipped or blocked (their rules did not select this commit) are not
    failures: a run on a branch without deploys succeeds though `smoke` needs `deploy`.
    """
    planned_out = {job.id for job in plan.jobs if job.status in _PLANNED_OUT}
    troubled = {s for job, s in states.items() if job not in planned_out and not s.succeeded}
    if not troubled:
        return RunState.SUCCESS
    if JobState.SUPERSEDED in troubled and troubled <= {JobState.SUPERSEDED, JobState.BLOCKED}:
        return RunState.CANCELLED
    return RunState.FAILED


_PLANNED_OUT = (PlanStatus.SKIPPED, PlanStatus.BLOCKED)


def _settle_unscheduled(runner: JobRunner, plan: Plan, options: RunOptions) -> None:
    """Record the jobs that will not run: skipped, blocked, or kept from the earlier run."""
    kept = {}
    if options.rerun_failed:
        kept = {job.job_id: job for job in runner.ctx.store.get_jobs(options.rerun_failed)}
    for job in plan.jobs:
        if job.status is PlanStatus.SKIPPED:
            runner.transition(job.id, JobState.SKIPPED, job.reason, finished_at=time.time())
        elif job.status is PlanStatus.BLOCKED:
            runner.transition(job.id, JobState.BLOCKED, job.reason, finished_at=time.time())
        elif job.status is PlanStatus.KEPT:
            earlier = kept[job.id]
            if earlier.outputs_blob:
                restore_outputs(
                    earlier.outputs_blob, runner.ctx.workspace.path, runner.ctx.store.blobs
                )
            runner.ctx.outputs[job.id] = earlier.outputs_blob
            runner.transition(
                job.id,
                JobState.CACHED,
                f"kept from run {options.rerun_failed}",
                outputs_blob=earlier.outputs_blob,
                log_blob=earlier.log_blob,
                cache_key=earlier.cache_key,
                finished_at=time.time(),
            )


def _drive(scheduler: Scheduler) -> dict[str, JobState]:
    """Run the scheduler; SIGTERM is treated like Ctrl-C (cancel, record, exit 130)."""

    async def main() -> dict[str, JobState]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await scheduler.run()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    with _default_sigint():
        try:
            return asyncio.run(main())
        except asyncio.CancelledError:
            # SIGTERM cancelled main(); surface it as the interrupt it is (exit 130).
            raise KeyboardInterrupt from None


@contextmanager
def _default_sigint() -> Iterator[None]:
    # asyncio.run turns SIGINT into cancellation of main() and then KeyboardInterrupt,
    # but only if Python's own SIGINT handler is installed.
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _abnormal_state(error: BaseException) -> RunState:
    if isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
        return RunState.CANCELLED
    return RunState.FAILED


def _finish_abnormally(store: Store, run_id: int, error: BaseException) -> None:
    now = time.time()
    for job in store.get_jobs(run_id):
        if not job.state.finished:
            store.set_job_state(
                run_id,
                job.job_id,
                JobState.CANCELLED,
                detail="the run was cancelled",
                finished_at=now,
            )
    reason = "cancelled by the user" if _abnormal_state(error) is RunState.CANCELLED else str(error)
    store.set_run_state(run_id, _abnormal_state(error), reason=reason)


def _state_env(project: Project, plan: Plan, git: GitContext) -> dict[str, str]:
    """Where steps find Conveyor's own state (image store, keys) and what they build from."""
    return {
        "CONVEYOR_PIPELINE": plan.pipeline,
        # The source repository named in provenance: its origin remote, else its folder.
        "CONVEYOR_SOURCE_URL": remote_url(git.root) or str(git.root),
        "CONVEYOR_STATE_DIR": str(project.state_dir),
        "CONVEYOR_IMAGE_STORE": str(project.state_dir / "images"),
        "CONVEYOR_PROJECT_DIR": str(project.directory),
        "CONVEYOR_SPEC": str(project.spec_path),
    }


MERGED_SARIF = "sarif-merged"


def _store_merged_sarif(store: Store, run_id: int) -> None:
    """The run's findings from every scanner, as one SARIF log (a run-level report)."""
    logs = [json.loads(store.blobs.get_bytes(r.digest)) for r in store.reports(run_id, "sarif")]
    if not logs:
        return
    merged = merge_logs(logs)
    digest = store.blobs.put_bytes(json.dumps(merged).encode())
    results = sum(len(run.get("results", [])) for run in merged["runs"])
    store.add_report(run_id, "", MERGED_SARIF, digest, {"results": results})


def _secret_names(loaded: LoadedPipeline, plan: Plan) -> set[str]:
    """Every name the pipeline calls a secret: its jobs' and its environments'."""
    names = {name for job in plan.jobs for name in job.job.secrets}
    for environment in loaded.pipeline.environments.values():
        names.update(environment.secrets)
    return names


def _base_env(
    run_id: int, git: GitContext, workspace: Path, options: RunOptions, secret_names: set[str]
) -> dict[str, str]:
    env = without_secrets(os.environ, secret_names)
    env.update(options.extra_env)
    env.update(
        {
            "CI": "true",
            "CONVEYOR": "true",
            "CONVEYOR_RUN_ID": str(run_id),
            # Who started the run: what a deploy step records as its actor.
            "CONVEYOR_ACTOR": options.actor or default_actor(),
            "CONVEYOR_COMMIT_SHA": git.sha,
            "CONVEYOR_BRANCH": git.branch or "",
            "CONVEYOR_TAG": git.tag or "",
            # What this run "brings in" since this branch's last successful run.
            "CONVEYOR_PREVIOUS_SHA": git.since or "",
            "CONVEYOR_WORKSPACE": str(workspace),
            # Reproducible artifacts: tools honouring it stamp the commit time, not "now".
            "SOURCE_DATE_EPOCH": str(int(git.committed_at.timestamp())),
        }
    )
    return env


def prune_workspaces(project: Project, *, keep: int = KEEP_WORKSPACES) -> None:
    """Remove the workspaces of all but the newest `keep` runs."""
    runs = project.state_dir / "runs"
    if not runs.is_dir():
        return
    numbered = sorted((int(p.name), p) for p in runs.iterdir() if p.name.isdigit())
    for _, path in numbered[:-keep]:
        shutil.rmtree(path / "workspace", ignore_errors=True)
