"""Runs one planned job: cache lookup, attempts with retries, outputs, state transitions.

Every state change goes to the store first (the event log), then to the reporter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.engine.cache import CacheKey, ToolVersions, compute_key, explain_miss, manifest_bytes
from conveyor.engine.evidence import RunEvidence
from conveyor.engine.executors.base import ExecResult, Executor, Stream
from conveyor.engine.joblog import JobLog, log_filename
from conveyor.engine.mask import Masker
from conveyor.engine.plan import PlannedJob
from conveyor.engine.report import Reporter
from conveyor.engine.state_writer import JobStateWriter
from conveyor.engine.step import (
    Environments,
    NoEnvironments,
    Step,
    StepContext,
    every_run_reason,
)
from conveyor.engine.workspace import (
    OutputsError,
    UnsafeRestoreError,
    Workspace,
    collect_outputs,
    restore_outputs,
)
from conveyor.errors import ConveyorError
from conveyor.spec.gates import Gates
from conveyor.spec.images import ImagesConfig
from conveyor.spec.model import RetryPolicy
from conveyor.states import FailureClass, JobState
from conveyor.store.records import CacheEntry
from conveyor.store.store import Store


@dataclass
class RunContext:
    """What every job of one run shares."""

    run_id: int
    pipeline: str
    store: Store
    workspace: Workspace
    logs_dir: Path
    base_env: dict[str, str]  # inherited + CONVEYOR_* variables, not part of the cache key
    secrets: dict[str, str]
    masker: Masker
    reporter: Reporter
    executors: Mapping[str, Executor]
    steps: Mapping[str, Step]  # the host's step table, by the name a planned job gives
    default_timeout: float
    default_retry: RetryPolicy | None
    gates: Gates = field(default_factory=Gates)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    use_cache: bool = True
    environments: Environments = field(default_factory=NoEnvironments)  # the host's
    branch: str | None = None  # the run's, so a cache miss is explained against its own
    tools: ToolVersions = field(init=False)
    states: JobStateWriter = field(init=False)  # the jobs' states, written off the hot path
    outputs: dict[str, str | None] = field(default_factory=dict)  # job id -> manifest digest

    def __post_init__(self) -> None:
        self.tools = ToolVersions(self.base_env)
        self.states = JobStateWriter(self.store)
        self.logs_dir.mkdir(parents=True, exist_ok=True)


class JobRunner:
    def __init__(self, context: RunContext) -> None:
        self.ctx = context

    def transition(self, job_id: str, state: JobState, detail: str = "", **fields: Any) -> None:
        detail = self.ctx.masker.mask_text(detail)  # shown live as well as stored
        self.ctx.states.put(self.ctx.run_id, job_id, state, {"detail": detail, **fields})
        self.ctx.reporter.job_state(job_id, state, detail)

    async def run(self, job: PlannedJob, slots: asyncio.Semaphore) -> JobState:
        every_run = every_run_reason(self.ctx.steps[job.step])
        if every_run is not None:  # nothing of it could come from the cache
            return await self._execute(job, None, every_run, slots)
        key = await self._key(job)
        if key is not None:
            hit = self.ctx.store.cache_get(key.digest)
            if hit is not None:
                return await self._restore(job, key, hit)
        miss = self._miss_reason(job, key)
        return await self._execute(job, key, miss, slots)

    def _miss_reason(self, job: PlannedJob, key: CacheKey | None) -> str:
        if key is None:
            return "cache disabled" if self.ctx.use_cache else "cache disabled (--no-cache)"
        found = self.ctx.store.cache_previous(self.ctx.pipeline, job.id, self.ctx.branch)
        previous, previous_branch = found if found is not None else (None, None)
        why = explain_miss(
            key,
            previous,
            self.ctx.store.blobs,
            branch=self.ctx.branch,
            previous_branch=previous_branch,
        )
        return "cache miss: " + why

    async def _key(self, job: PlannedJob) -> CacheKey | None:
        if not (job.job.cache and self.ctx.use_cache):
            return None
        step = self.ctx.steps[job.step]
        manifest = self.ctx.workspace.input_manifest(job.job.inputs)
        raw = manifest_bytes(manifest)
        manifest_digest = self.ctx.store.blobs.put_bytes(raw)
        tools = {}
        for tool in job.job.tools:
            tools[tool] = await asyncio.to_thread(self.ctx.tools.version, tool)
        return compute_key(
            step=f"{step.name}@{step.version}",
            command=step.describe(job.params),
            env=job.env,
            inputs_manifest=manifest_digest,
            inputs_digest=manifest_digest,
            upstream={need: self.ctx.outputs.get(need) for need in job.needs},
            outputs=[*job.job.outputs, *step.outputs(job.params)],
            tools=tools,
        )

    async def _restore(self, job: PlannedJob, key: CacheKey, hit: CacheEntry) -> JobState:
        """A cache hit: outputs back in the workspace, then the never-cached finalize."""
        log = JobLog(self._log_path(job.id), job.id, self.ctx.masker, self.ctx.reporter)
        if hit.run_id == self.ctx.run_id:
            self.ctx.states.flush()  # a job of this run: its log is in its queued state
        original = self.ctx.store.get_job(hit.run_id, hit.job_id) if hit.run_id else None
        if original is not None and original.log_blob:
            log.replay(self.ctx.store.blobs.get_bytes(original.log_blob))
        log.write(Stream.SYSTEM, f"cache hit: outputs of run {hit.run_id} restored")
        if hit.outputs_manifest:
            try:
                restore_outputs(hit.outputs_manifest, self.ctx.workspace.path, self.ctx.store.blobs)
            except UnsafeRestoreError as error:  # a crafted entry: the job fails, not the run
                return self._refuse_restore(job, key, log, error)
        self.ctx.outputs[job.id] = hit.outputs_manifest
        result = await self._finalize(job, log, None)
        log.close()
        detail = f"cache hit: outputs of run {hit.run_id} restored (key {key.digest[:12]})"
        if result.ok and result.detail:  # what the never-cached phase did this time
            detail = f"{result.detail} ({detail})"
        state = JobState.CACHED if result.ok else JobState.FAILED
        self.transition(
            job.id,
            state,
            detail if result.ok else result.detail,
            cache_key=key.digest,
            outputs_blob=hit.outputs_manifest,
            log_blob=self._store_log(log),
            failure=result.failure,
            finished_at=time.time(),
        )
        return state

    def _refuse_restore(
        self, job: PlannedJob, key: CacheKey, log: JobLog, error: UnsafeRestoreError
    ) -> JobState:
        detail = f"{error.message} ({error.hint})" if error.hint else error.message
        log.write(Stream.SYSTEM, detail)
        log.close()
        self.transition(
            job.id,
            JobState.FAILED,
            detail,
            cache_key=key.digest,
            log_blob=self._store_log(log),
            failure=FailureClass.INFRASTRUCTURE,
            finished_at=time.time(),
        )
        return JobState.FAILED

    async def _execute(
        self, job: PlannedJob, key: CacheKey | None, miss: str, slots: asyncio.Semaphore
    ) -> JobState:
        log = JobLog(self._log_path(job.id), job.id, self.ctx.masker, self.ctx.reporter)
        started = time.time()
        try:
            # The slot covers the commands only: storing logs, outputs and states
            # afterwards overlaps with the next job's commands.
            async with slots:
                started = time.time()
                self.transition(
                    job.id,
                    JobState.RUNNING,
                    miss,
                    attempts=1,
                    started_at=started,
                    cache_key=key.digest if key else None,
                )
                ran = await self._attempts(job, log)
            # Let a job waiting for the slot start its commands before this one's bookkeeping.
            await asyncio.sleep(0)
            ran, outputs = self._outputs(job, ran, log)
            if ran.ok and key is not None:
                self._cache_put(job, key, outputs)
            result = await self._finalize(job, log, ran)
        except asyncio.CancelledError:
            log.write(Stream.SYSTEM, "cancelled")
            log.close()
            self.transition(
                job.id,
                JobState.CANCELLED,
                "cancelled",
                finished_at=time.time(),
                log_blob=self._store_log(log),
            )
            raise
        log.close()
        log_blob = self._store_log(log)
        if not result.ok:
            self.transition(
                job.id,
                JobState.FAILED,
                result.detail or "failed",
                exit_code=result.exit_code,
                failure=result.failure,
                finished_at=time.time(),
                log_blob=log_blob,
            )
            return JobState.FAILED
        self.ctx.outputs[job.id] = outputs
        self.transition(
            job.id,
            JobState.SUCCESS,
            _success_detail(result.detail, time.time() - started, miss),
            exit_code=0,
            finished_at=time.time(),
            log_blob=log_blob,
            outputs_blob=outputs,
        )
        return JobState.SUCCESS

    def _cache_put(self, job: PlannedJob, key: CacheKey, outputs: str | None) -> None:
        """The work of `run` is cached even when the gate in `finalize` then blocks."""
        self.ctx.store.cache_put(
            CacheEntry(
                key=key.digest,
                pipeline=self.ctx.pipeline,
                job_id=job.id,
                run_id=self.ctx.run_id,
                created_at=time.time(),
                outputs_manifest=outputs,
                components=key.components,
            )
        )

    async def _finalize(self, job: PlannedJob, log: JobLog, ran: ExecResult | None) -> ExecResult:
        executor = self.ctx.executors.get(job.job.executor)
        if executor is None:
            return ran or ExecResult(None, FailureClass.INFRASTRUCTURE, 0.0, "no executor")
        context = self._step_context(job, log, executor)
        try:
            return await self.ctx.steps[job.step].finalize(job.params, context, ran)
        except ConveyorError as error:  # e.g. a malformed exceptions file: the job's failure
            log.write(Stream.SYSTEM, str(error))
            return ExecResult(None, FailureClass.EXIT_CODE, 0.0, error.message)

    async def _attempts(self, job: PlannedJob, log: JobLog) -> ExecResult:
        policy = job.job.retry or self.ctx.default_retry
        limit = 1 + (policy.max if policy else 0)
        attempt = 1
        while True:
            result = await self._attempt(job, log)
            if result.ok or attempt >= limit or not _retryable(result, policy):
                return result
            attempt += 1
            note = f"attempt {attempt - 1} failed ({result.detail or result.failure}); retrying"
            log.write(Stream.SYSTEM, f"{note}: attempt {attempt} of {limit}")
            self.transition(job.id, JobState.RUNNING, note, attempts=attempt)

    async def _attempt(self, job: PlannedJob, log: JobLog) -> ExecResult:
        executor = self.ctx.executors.get(job.job.executor)
        if executor is None:
            detail = f"unknown executor '{job.job.executor}'"
            return ExecResult(None, FailureClass.INFRASTRUCTURE, 0.0, detail)
        try:
            return await self.ctx.steps[job.step].run(
                job.params, self._step_context(job, log, executor)
            )
        except ConveyorError as error:
            log.write(Stream.SYSTEM, str(error))
            return ExecResult(None, FailureClass.EXIT_CODE, 0.0, error.message)

    def _step_context(self, job: PlannedJob, log: JobLog, executor: Executor) -> StepContext:
        env = {**self.ctx.base_env, **job.env, "CONVEYOR_JOB": job.id}
        if job.job.executor != "local":  # where a remote executor sends the job
            env["CONVEYOR_QUEUE"] = job.job.queue
        env.update({name: self.ctx.secrets[name] for name in job.job.secrets})
        evidence = RunEvidence(
            self.ctx.store,
            run_id=self.ctx.run_id,
            job_id=job.id,
            pipeline=self.ctx.pipeline,
            gates=self.ctx.gates,
            images=self.ctx.images,
        )
        return StepContext(
            job_id=job.id,
            workspace=self.ctx.workspace.path,
            env=env,
            timeout=job.job.timeout or self.ctx.default_timeout,
            executor=executor,
            log=log,
            evidence=evidence,
            environments=self.ctx.environments,
        )

    def _outputs(
        self, job: PlannedJob, result: ExecResult, log: JobLog
    ) -> tuple[ExecResult, str | None]:
        """Store the job's declared outputs; missing ones turn success into failure."""
        if not result.ok:
            return result, None
        try:
            blobs = self.ctx.store.blobs
            patterns = [*job.job.outputs, *self.ctx.steps[job.step].outputs(job.params)]
            return result, collect_outputs(self.ctx.workspace.path, patterns, blobs)
        except OutputsError as error:  # missing, or leading outside the workspace
            log.write(Stream.SYSTEM, str(error))
            failed = ExecResult(
                result.exit_code, FailureClass.EXIT_CODE, result.duration, str(error)
            )
            return failed, None

    def _store_log(self, log: JobLog) -> str:
        return self.ctx.store.blobs.put_file(log.path)

    def _log_path(self, job_id: str) -> Path:
        return self.ctx.logs_dir / log_filename(job_id)


def _retryable(result: ExecResult, policy: RetryPolicy | None) -> bool:
    if policy is None or result.failure is None or result.failure not in policy.on:
        return False
    if result.failure is FailureClass.EXIT_CODE and policy.exit_codes is not None:
        return result.exit_code in policy.exit_codes
    return True


def _success_detail(detail: str, took: float, miss: str) -> str:
    """What `status` shows for a job that ran: its own summary, or its time and why it ran."""
    return detail or f"took {took:.2f}s ({miss})"
