"""A worker's side of one delivery: claim the attempt, check the commit out, lay the run's
files over it, run the command with the local executor while its log streams to Redis,
store what it created or changed, and record the first completion only."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from conveyor.engine.executors.base import ExecRequest, ExecResult, Stream
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import RAW_DIR
from conveyor.engine.workers.artifacts import ArtifactStore, open_store
from conveyor.engine.workers.protocol import (
    END_FIELD,
    LINE_FIELD,
    RECORD_TTL_SECONDS,
    JobMessage,
    JobResult,
    cancel_key,
    claim_key,
    log_key,
    result_key,
)
from conveyor.engine.workers.sealing import Sealer
from conveyor.engine.workers.settings import DEFAULT_VISIBILITY_TIMEOUT, WorkerSettings
from conveyor.errors import ConveyorError
from conveyor.states import FailureClass
from conveyor.vcs.git import run_git

PRUNE_EVERY = 200
# How long a finished delivery waits for an unreachable broker to take its result.
RECORD_PATIENCE_SECONDS = 60.0
# A job's timeout plus this must stay under the visibility timeout (see celery_app.py).
VISIBILITY_MARGIN_SECONDS = 60.0
# Renew the claim if it is ours, or take it back if the broker lost it (a restart): the
# run's side must keep seeing a live claim while this delivery works.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WorkerRuntime:
    def __init__(
        self,
        folder: Path,
        settings: WorkerSettings,
        name: str,
        *,
        visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT,
    ) -> None:
        self.name = name
        self.visibility_timeout = visibility_timeout
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.broker_url)
        self.sealer = Sealer(settings.key)
        self.artifacts = ArtifactStore(
            open_store(settings.artifacts), self.sealer.seal, self.sealer.open
        )
        self.repositories = RepositoryCache(folder / "repos")
        self.jobs = folder / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        self.redis.close()
        close_store = getattr(self.artifacts.store, "close", None)
        if callable(close_store):
            close_store()

    def handle(self, sealed: str) -> str:
        """Run one delivery; what happened, for the worker's own log."""
        try:
            message = JobMessage.from_json(self.sealer.open_json(sealed))
        except (ConveyorError, ValueError, TypeError) as error:
            return f"refused a message: {error}"  # not ours, or altered: never run
        attempt = message.attempt
        if self.redis.exists(result_key(attempt), cancel_key(attempt)):
            return f"{attempt}: already finished or cancelled; skipped"
        delivery = uuid.uuid4().hex
        holder = f"{self.name} {os.getpid()} {delivery}"
        lease_ms = str(int(self.settings.lease * 1000))
        if not self.redis.set(claim_key(attempt), holder, nx=True, px=int(lease_ms)):
            # A second delivery of a job another worker is running (a slow acknowledgement
            # or a redelivery): that worker's completion counts; if it dies, its claim
            # lapses and the run's side sends the job again.
            return f"{attempt}: claimed by another worker; this delivery dropped"
        stop = threading.Event()
        cancelled = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(attempt, holder, lease_ms, stop, cancelled), daemon=True
        )
        beat.start()
        try:
            result = asyncio.run(self._deliver(message, delivery, cancelled))
            won = self._record(attempt, self.sealer.seal_json(result.to_json()))
            self._wake_follower(attempt, delivery)
        finally:
            stop.set()
            beat.join()
            self.redis.eval(_RELEASE, 1, claim_key(attempt), holder)
            shutil.rmtree(self.jobs / delivery, ignore_errors=True)
        if not won:
            return f"{attempt}: another delivery completed first; this result discarded"
        return f"{attempt}: {result.failure or 'success'}"

    def _record(self, attempt: str, sealed_result: str) -> bool:
        """Write the result unless another delivery's is there; whether ours counts. A
        broker that is restarting is waited for: the job's work is not thrown away."""
        deadline = time.monotonic() + RECORD_PATIENCE_SECONDS
        while True:
            try:
                written = self.redis.set(
                    result_key(attempt), sealed_result, nx=True, ex=RECORD_TTL_SECONDS
                )
                return bool(written)
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _wake_follower(self, attempt: str, delivery: str) -> None:
        """An entry that is no log line, so the run's side, blocked reading the log
        stream, looks for the result at once."""
        with contextlib.suppress(redis.RedisError):
            self.redis.xadd(log_key(attempt), {END_FIELD: delivery})

    def _heartbeat(
        self,
        attempt: str,
        holder: str,
        lease_ms: str,
        stop: threading.Event,
        cancelled: threading.Event,
    ) -> None:
        while not stop.wait(self.settings.lease / 3):
            try:
                self.redis.eval(_RENEW, 1, claim_key(attempt), holder, lease_ms)
                if self.redis.exists(cancel_key(attempt)):
                    cancelled.set()
            except redis.RedisError:
                continue  # the broker is restarting: try again at the next beat

    async def _deliver(
        self, message: JobMessage, delivery: str, cancelled: threading.Event
    ) -> JobResult:
        root = self.jobs / delivery
        paths = _PathMap(str(root), message.run_root)
        sink = RedisLogSink(self.redis, log_key(message.attempt), self.sealer, paths.back)
        sink.write(Stream.SYSTEM, f"on worker {self.name} (delivery {delivery[:12]})")
        longest = (message.timeout or float("inf")) + VISIBILITY_MARGIN_SECONDS
        if longest > self.visibility_timeout:
            sink.write(
                Stream.SYSTEM,
                f"warning: the job's timeout plus {VISIBILITY_MARGIN_SECONDS:g}s is above this "
                f"worker's visibility timeout ({self.visibility_timeout:g}s): the broker may "
                "hand the job to another worker meanwhile (that copy finds the claim and stops)",
            )
        try:
            # Blocking calls in this loop are fine: it is this delivery's own, in a thread
            # of the worker's pool, and nothing else runs in it yet (or any more, below).
            self._prepare(message, root)
        except (ConveyorError, OSError) as error:
            sink.write(Stream.SYSTEM, f"worker {self.name}: {error}")
            return self._result(delivery, _infrastructure(f"worker {self.name}: {error}"), None)
        workspace = root / message.prefix
        before = snapshot(workspace)
        ran = await _run_unless_cancelled(_request(message, root), sink, cancelled)
        try:
            changed = changed_files(workspace, before)
            paths.back_in_reports(workspace, changed)
            tag = f"out-{delivery}"
            outputs = self.artifacts.push(workspace, changed, tag)
        except (ConveyorError, OSError) as error:
            detail = f"worker {self.name}: could not store the job's files: {error}"
            sink.write(Stream.SYSTEM, detail)  # the job's log says why, as for _prepare
            return self._result(delivery, _infrastructure(detail), None)
        return self._result(delivery, ran, outputs)

    def _prepare(self, message: JobMessage, root: Path) -> None:
        self.repositories.checkout(message.repository, message.commit, root)
        if message.inputs is not None:
            try:
                self.artifacts.pull(message.inputs, root)
            except ConveyorError as error:
                raise ConveyorError(f"could not fetch the job's files: {error}") from None

    def _result(self, delivery: str, ran: ExecResult, outputs: str | None) -> JobResult:
        return JobResult(
            delivery=delivery,
            worker=self.name,
            exit_code=ran.exit_code,
            failure=ran.failure.value if ran.failure else None,
            duration=ran.duration,
            detail=ran.detail,
            outputs=outputs,
            extra=dict(ran.extra),
        )


async def _run_unless_cancelled(
    request: ExecRequest, sink: RedisLogSink, cancelled: threading.Event
) -> ExecResult:
    """The local executor, stopped (its process group killed) if the run cancels the job."""
    task = asyncio.create_task(LocalExecutor().execute(request, sink))
    while not task.done():
        await asyncio.wait([task], timeout=0.2)
        if cancelled.is_set() and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                return ExecResult(None, FailureClass.INFRASTRUCTURE, 0.0, "cancelled by the run")
    return task.result()


def _request(message: JobMessage, root: Path) -> ExecRequest:
    def here(text: str) -> str:
        return text.replace(message.run_root, str(root)) if message.run_root else text

    env = {**os.environ, **{name: here(value) for name, value in message.env.items()}}
    return ExecRequest(
        argv=[here(word) for word in message.argv],
        cwd=root / message.prefix / message.cwd,
        env=env,
        timeout=message.timeout,
        kill_grace=message.kill_grace,
    )


def _infrastructure(detail: str) -> ExecResult:
    return ExecResult(None, FailureClass.INFRASTRUCTURE, 0.0, detail)


@dataclass(frozen=True)
class _PathMap:
    """The worker's checkout stands in for the run's: the run's path in the command and
    its environment becomes the worker's (`_request`), and the worker's, in what comes
    back (log lines, and the step reports in `.conveyor-out`, which its finalize reads on
    the run's side), becomes the run's again, so both read as a local run's."""

    here: str  # the worker's checkout
    there: str  # the run's checkout ("" when unknown: nothing is replaced)

    def back(self, text: str) -> str:
        return text.replace(self.here, self.there) if self.there else text

    def back_in_reports(self, workspace: Path, names: list[str]) -> None:
        if not self.there:
            return
        here, there = self.here.encode(), self.there.encode()
        for name in names:
            if name.startswith(RAW_DIR + "/"):
                path = workspace / name
                data = path.read_bytes()
                if here in data:
                    path.write_bytes(data.replace(here, there))


class RedisLogSink:
    """Each line, sealed, onto the attempt's Redis stream as it comes."""

    def __init__(
        self, client: redis.Redis, key: str, sealer: Sealer, back: Callable[[str], str]
    ) -> None:
        self._client = client
        self._key = key
        self._sealer = sealer
        self._back = back
        self._expiry_set = False

    def write(self, stream: Stream, line: str) -> None:
        sealed = self._sealer.seal_json([stream.value, self._back(line)])
        try:
            self._client.xadd(self._key, {LINE_FIELD: sealed})
            if not self._expiry_set:
                self._client.expire(self._key, RECORD_TTL_SECONDS)
                self._expiry_set = True
        except redis.RedisError:
            pass  # a broker restart loses live lines, never the job


class RepositoryCache:
    """One bare mirror per repository URL; a commit is fetched the first time it is asked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._locks: dict[str, threading.Lock] = {}
        self._known: set[tuple[str, str]] = set()  # commits already in their mirror
        self._added = 0
        self._guard = threading.Lock()

    def checkout(self, url: str, sha: str, destination: Path) -> None:
        mirror = self.folder / hashlib.sha256(url.encode()).hexdigest()[:16]
        with self._lock(url):
            if (url, sha) not in self._known:
                self._fetch(url, sha, mirror)
                self._known.add((url, sha))
            self._added += 1
            if self._added % PRUNE_EVERY == 0:  # forget the worktrees of finished jobs
                run_git(mirror, "worktree", "prune")
            # A worktree of the mirror: one git process (a clone and a checkout are two,
            # and the job's folder is a repository either way). Under the lock: git reads
            # the other worktrees' records while it adds one.
            run_git(mirror, "worktree", "add", "--quiet", "--detach", str(destination), sha)

    def _fetch(self, url: str, sha: str, mirror: Path) -> None:
        if not mirror.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            run_git(self.folder, "clone", "--quiet", "--bare", url, str(mirror))
        if not _has_commit(mirror, sha):
            run_git(mirror, "fetch", "--quiet", url, "+refs/*:refs/*")
        if not _has_commit(mirror, sha):
            raise ConveyorError(f"commit {sha} is not in {url}")

    def _lock(self, url: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(url, threading.Lock())


def _has_commit(mirror: Path, sha: str) -> bool:
    try:
        run_git(mirror, "cat-file", "-e", f"{sha}^{{commit}}")
    except ConveyorError:
        return False
    return True


Snapshot = dict[str, tuple[int, int, int]]


def snapshot(folder: Path) -> Snapshot:
    """Every regular file under `folder` (not in .git): size, mtime and inode."""
    found: Snapshot = {}
    _walk(folder, "", found.__setitem__)
    return found


def _walk(folder: Path, prefix: str, add: Callable[[str, tuple[int, int, int]], None]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        relative = prefix + entry.name
        if entry.is_dir(follow_symlinks=False):
            if entry.name != ".git":
                _walk(Path(entry.path), relative + "/", add)
            continue
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):
            add(relative, (info.st_size, info.st_mtime_ns, info.st_ino))


def changed_files(folder: Path, before: Snapshot) -> list[str]:
    """Files created or changed since `before` (deletions do not travel)."""
    after = snapshot(folder)
    return sorted(name for name, seen in after.items() if before.get(name) != seen)
