"""Jobs on Celery workers, for real: Redis, the registry, git, and `conveyor worker`
processes in folders of their own, standing for two machines.

Each worker is a real `python -m conveyor worker` (Celery, threads pool); the run is the
ordinary service-layer run with `executor: celery`. The claim lease is 2 s here so a
killed worker is noticed quickly; the pickup timeout is short where a test waits for it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from conftest import GIT_ENV, GitProject, MakeProject, wait_until
from conveyor.engine.report import SilentReporter
from conveyor.engine.workers.protocol import (
    JobMessage,
    JobResult,
    cancel_key,
    claim_key,
    log_key,
    result_key,
)
from conveyor.engine.workers.runtime import WorkerRuntime
from conveyor.engine.workers.sealing import Sealer, new_key
from conveyor.engine.workers.settings import WorkerSettings
from conveyor.service.project import Project
from conveyor.service.runs import RunOptions, execute_run
from conveyor.states import FailureClass, JobState, RunState
from real.conftest import free_port

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

SECRET = "s3cr3t-value-never-in-redis"


@dataclass
class RedisServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: apt-get install -y redis-server")
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir",
                 str(self.folder), "--save", "", "--appendonly", "no"],
                stdout=log, stderr=log,
            )  # fmt: skip
        with redis.Redis(port=self.port) as client:
            wait_until(lambda: _answers(client), "redis-server to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[RedisServer]:
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker_env(
    broker: RedisServer, registry: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The settings both sides read; set for this process (the run's side) too."""
    env = {
        "CONVEYOR_BROKER_URL": broker.url,
        "CONVEYOR_ARTIFACTS": registry,
        "CONVEYOR_WORKER_KEY": new_key().decode(),
        "CONVEYOR_WORKER_LEASE": "2",
        "CONVEYOR_PICKUP_TIMEOUT": "20",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def clients() -> Iterator[Callable[[str], redis.Redis]]:
    """`clients(url)`: a Redis client, closed after the test."""
    opened: list[redis.Redis] = []

    def client(url: str) -> redis.Redis:
        opened.append(redis.Redis.from_url(url))
        return opened[-1]

    yield client
    for each in opened:
        each.close()


@dataclass
class Worker:
    name: str
    folder: Path
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Workers:
    root: Path
    env: dict[str, str]
    started: list[Worker] = field(default_factory=list)

    def start(self, name: str, queues: str) -> Worker:
        folder = self.root / name  # a machine of its own: nothing shared but the services
        folder.mkdir()
        log = folder / "worker.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "worker", "--queues", queues,
                 "--name", name, "--folder", str(folder / "state")],
                cwd=folder, env={**os.environ, **GIT_ENV, **self.env},
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        worker = Worker(name, folder, process, log)
        self.started.append(worker)
        return worker

    def wait_ready(self) -> None:
        for worker in self.started:
            wait_until(_ready(worker), f"worker {worker.name} ready")

    def kill(self, worker: Worker) -> None:
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=10)


def _ready(worker: Worker) -> Callable[[], bool]:
    return lambda: " ready." in worker.text()  # Celery's own line once it consumes


@pytest.fixture
def workers(tmp_path: Path, worker_env: dict[str, str]) -> Iterator[Workers]:
    pool = Workers(tmp_path / "machines", worker_env)
    pool.root.mkdir()
    yield pool
    for worker in pool.started:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGKILL)
            worker.process.wait(timeout=10)


PIPELINE = """\
version: 1
defaults:
  executor: {executor}
gates:
  findings:
    fail_on: never
jobs:
  lint:
    queue: beta
    uses: lint
  build:
    queue: alpha
    run: mkdir -p dist && echo "built from $(cat src.txt)" > dist/app.txt
    outputs: [dist/app.txt]
  check:
    queue: beta
    needs: [build]
    secrets: [TOKEN]
    run:
      - test "$(cat dist/app.txt)" = "built from source"
      - printf '%s' "$TOKEN" | sha256sum | cut -c1-16 > token.sha
      - echo "checked on $CONVEYOR_QUEUE"
    outputs: [token.sha]
  slow:
    needs: [check]
    run:
      - echo started
      - sleep 2.5
      - cat dist/app.txt token.sha > report.txt
    outputs: [report.txt]
"""


def _project(git_project: MakeProject, executor: str) -> GitProject:
    # dist/ is ignored by git: upstream outputs travel all the same.
    files = {"src.txt": "source\n", ".gitignore": "dist/\n", "app.py": "import os\n"}
    return git_project(PIPELINE.format(executor=executor), files=files)


def _outputs(project: GitProject, run_id: int) -> dict[str, str | None]:
    return {job_id: job.outputs_blob for job_id, job in project.jobs(run_id).items()}


def _in_background(action: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run `action` in a thread (the run itself stays in the main thread, for its signals)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            action()
        except BaseException as error:  # re-raised by the test
            errors.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, errors


def _monitor(url: str, seen: list[str], stop: threading.Event) -> threading.Thread:
    """Every command Redis receives, as text (MONITOR), until `stop`."""

    def target() -> None:
        client = redis.Redis.from_url(url)
        with client, client.monitor() as monitor:  # type: ignore[no-untyped-call]
            for command in monitor.listen():
                seen.append(str(command.get("command", "")))
                if stop.is_set():
                    return

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_jobs_spread_over_two_workers_survive_a_kill_and_match_a_local_run(
    git_project: MakeProject,
    workers: Workers,
    broker: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[[str], redis.Redis],
) -> None:
    monkeypatch.setenv("TOKEN", SECRET)
    local = _project(git_project, "local")
    expected = local.run()
    assert expected.state is RunState.SUCCESS

    first = workers.start("first", "default,alpha")
    second = workers.start("second", "default,beta")
    workers.wait_ready()
    project = _project(git_project, "celery")
    seen: list[str] = []
    stop_monitor = threading.Event()
    _monitor(broker.url, seen, stop_monitor)
    client = clients(broker.url)
    killed: list[Worker] = []

    def kill_the_slow_jobs_worker() -> None:
        holder = wait_until(lambda: _slow_job_holder(client), "a worker to take the slow job")
        killed.append(first if holder == "first" else second)
        workers.kill(killed[0])  # kill -9, mid-job

    killer, errors = _in_background(kill_the_slow_jobs_worker)
    outcome = project.run()
    killer.join(timeout=30)
    stop_monitor.set()
    client.ping()  # one more command, so the monitor sees `stop` and returns
    assert not errors, errors
    survivor = second if killed[0] is first else first

    assert outcome.state is RunState.SUCCESS, project.jobs(outcome.run_id)
    run_id = outcome.run_id
    assert set(outcome.jobs.values()) == {JobState.SUCCESS}
    assert _outputs(project, run_id) == _outputs(local, expected.run_id)
    # Jobs went where their queues say; the slow one finished on the survivor.
    assert "on worker first" in project.log(run_id, "build")
    assert "on worker second" in project.log(run_id, "check")
    assert "checked on beta" in project.log(run_id, "check")
    # A step's report, written on a worker, names the run's paths, as a local run's does
    # (its findings are among the outputs found identical above).
    assert "lint: 1 files scanned, 1 findings" in project.log(run_id, "lint")
    findings = project.workspace(run_id) / ".conveyor-out" / "lint" / "findings.json"
    assert "F401" in findings.read_text()
    assert str(workers.root) not in findings.read_text() + project.log(run_id, "lint")
    slow_log = project.log(run_id, "slow")
    assert "sending it again (delivery 2 of 2)" in slow_log
    assert f"on worker {survivor.name}" in slow_log
    assert slow_log.count("\tstdout\tstarted\n") == 2  # once per delivery
    # Live: the killed delivery's line reached the log before the job was sent again.
    assert slow_log.index("\tstdout\tstarted\n") < slow_log.index("stopped answering")
    # The secret reached the job (its digest is an output) but never Redis in clear.
    assert all(SECRET not in command for command in seen)
    assert len(seen) > 20

    # A project in a folder of its repository: the worker finds it at the same place.
    nested = git_project(
        "version: 1\njobs:\n  top:\n    run: 'true'\n",
        files={
            "top.txt": "from the repository's root\n",
            "app/conveyor.yml": "version: 1\ndefaults:\n  executor: celery\njobs:\n"
            "  where:\n    run: cat ../top.txt > copy.txt\n    outputs: [copy.txt]\n",
        },
    )
    spec = nested.root / "app" / "conveyor.yml"
    ran = execute_run(Project.locate(spec), RunOptions(spec=spec), SilentReporter())
    assert ran.state is RunState.SUCCESS
    copy = Project.locate(spec).run_dir(ran.run_id) / "workspace" / "app" / "copy.txt"
    assert copy.read_text() == "from the repository's root\n"


def _slow_job_holder(client: redis.Redis) -> str | None:
    """The name of the worker whose claim is on a job that has printed `started`."""
    for key in client.scan_iter("conveyor:attempt:*:claim"):
        holder: Any = client.get(key)
        log = bytes(key).decode().replace(":claim", ":log")
        if holder and client.xlen(log) >= 1 and _is_slow(client, log):
            return str(holder.decode().split()[0])
    return None


def _is_slow(client: redis.Redis, log: str) -> bool:
    sealer = Sealer(os.environ["CONVEYOR_WORKER_KEY"].encode())
    entries: Any = client.xrange(log)
    lines = [sealer.open_json(fields[b"d"])[1] for _, fields in entries if b"d" in fields]
    return "started" in lines


def test_a_job_no_worker_takes_fails_clearly(
    git_project: MakeProject,
    worker_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[[str], redis.Redis],
) -> None:
    monkeypatch.setenv("CONVEYOR_PICKUP_TIMEOUT", "1")
    project = git_project(
        "version: 1\njobs:\n  lonely:\n    executor: celery\n    queue: nobody\n"
        "    run: echo never\n"
    )
    outcome = project.run()
    assert outcome.state is RunState.FAILED
    job = project.jobs(outcome.run_id)["lonely"]
    assert job.state is JobState.FAILED
    assert job.failure is FailureClass.INFRASTRUCTURE
    assert job.detail is not None
    assert "no worker on queue 'nobody' took the job within 1s" in job.detail
    # A worker that comes later skips it: the attempt is marked cancelled.
    client = clients(worker_env["CONVEYOR_BROKER_URL"])
    assert list(client.scan_iter("conveyor:attempt:*:cancel"))


def test_a_worker_that_stops_answering_fails_the_job_clearly(
    git_project: MakeProject,
    workers: Workers,
    broker: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    clients: Callable[[str], redis.Redis],
) -> None:
    monkeypatch.setenv("CONVEYOR_PICKUP_TIMEOUT", "2")
    frozen = workers.start("frozen", "default")
    workers.wait_ready()
    # First a job past its timeout: the worker stops it, the run records a timeout.
    late = git_project(
        "version: 1\ndefaults:\n  executor: celery\njobs:\n  late:\n"
        "    timeout: 1s\n    run: sleep 5\n"
    )
    late_job = late.jobs(late.run().run_id)["late"]
    assert (late_job.failure, late_job.detail) == (FailureClass.TIMEOUT, "timed out after 1s")

    project = git_project(
        "version: 1\ndefaults:\n  executor: celery\njobs:\n  stuck:\n    run: sleep 6\n"
    )
    client = clients(broker.url)

    def freeze_once_it_runs() -> None:
        wait_until(lambda: list(client.scan_iter("conveyor:attempt:*:claim")), "a claim")
        os.killpg(frozen.process.pid, signal.SIGSTOP)  # alive, but never answers again

    freezer, errors = _in_background(freeze_once_it_runs)
    outcome = project.run()
    freezer.join(timeout=30)
    assert not errors, errors
    job = project.jobs(outcome.run_id)["stuck"]
    assert job.state is JobState.FAILED
    assert job.failure is FailureClass.INFRASTRUCTURE
    assert job.detail is not None
    assert (
        "no worker on queue 'default' took the job within 2s after its worker stopped answering"
        in job.detail
    )
    assert "stopped answering (its claim lapsed)" in project.log(outcome.run_id, "stuck")


def test_a_broker_restart_mid_job_is_waited_out(
    git_project: MakeProject,
    workers: Workers,
    broker: RedisServer,
    clients: Callable[[str], redis.Redis],
) -> None:
    workers.start("only", "default")
    workers.wait_ready()
    project = git_project(
        "version: 1\ndefaults:\n  executor: celery\njobs:\n  long:\n    run:\n"
        "      - echo before\n      - sleep 2\n      - echo after > out.txt\n"
        "    outputs: [out.txt]\n"
    )
    client = clients(broker.url)

    def restart_once_the_job_runs() -> None:
        wait_until(lambda: list(client.scan_iter("conveyor:attempt:*:claim")), "a claim")
        broker.stop()  # everything in Redis is lost: it keeps nothing on disk here
        broker.start()

    restarter, errors = _in_background(restart_once_the_job_runs)
    outcome = project.run()
    restarter.join(timeout=30)
    assert not errors, errors
    assert outcome.state is RunState.SUCCESS, project.jobs(outcome.run_id)
    assert (project.workspace(outcome.run_id) / "out.txt").read_text() == "after\n"


ONE_JOB = "version: 1\njobs:\n  a:\n    run: 'true'\n"


@dataclass
class DirectWorker:
    """A worker's runtime called in this process (no Celery), beside a one-job project."""

    project: GitProject
    settings: WorkerSettings
    runtime: WorkerRuntime
    sealer: Sealer


@pytest.fixture
def direct_worker(
    git_project: MakeProject,
    worker_env: dict[str, str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Callable[..., DirectWorker]:
    """`direct_worker(lease=None)`: a DirectWorker, closed at teardown."""

    def make(lease: float | None = None) -> DirectWorker:
        project = git_project(ONE_JOB)
        settings = WorkerSettings.from_env(worker_env)
        leased = settings if lease is None else replace(settings, lease=lease)
        runtime = WorkerRuntime(tmp_path / "machine", leased, "w")
        request.addfinalizer(runtime.close)
        return DirectWorker(project, settings, runtime, Sealer(settings.key))

    return make


def _message(project: GitProject, tmp_path: Path, attempt: str) -> JobMessage:
    counter = tmp_path / "deliveries.txt"
    return JobMessage(
        attempt=attempt,
        job_id="twice",
        repository=str(project.root),
        commit=project.git("rev-parse", "HEAD"),
        prefix="",
        argv=["bash", "-c", f"echo ran >> {counter}; sleep 0.6; echo done > out.txt"],
        cwd="",
        env={},
        timeout=30.0,
        kill_grace=1.0,
        inputs=None,
        run_root="",
    )


def test_a_job_picked_up_twice_completes_once(
    direct_worker: Callable[..., DirectWorker],
    tmp_path: Path,
    clients: Callable[[str], redis.Redis],
    request: pytest.FixtureRequest,
) -> None:
    # A long lease: no renewal runs during these short jobs, so the test alone decides
    # when a claim lapses.
    direct = direct_worker(lease=30)
    project, settings, runtime, sealer = (
        direct.project,
        direct.settings,
        direct.runtime,
        direct.sealer,
    )
    client = clients(settings.broker_url)
    counter = tmp_path / "deliveries.txt"

    # Two deliveries at once (a redelivery while the first still runs): one runs.
    sealed = sealer.seal_json(_message(project, tmp_path, "a1").to_json())
    outcomes = _side_by_side(lambda: runtime.handle(sealed), lambda: runtime.handle(sealed))
    assert sorted(outcomes) == [
        "a1: claimed by another worker; this delivery dropped",
        "a1: success",
    ]
    assert counter.read_text() == "ran\n"
    assert runtime.handle(sealed) == "a1: already finished or cancelled; skipped"

    # A slow acknowledgement: the first delivery's claim lapses while it runs, a second
    # delivery runs it too; only the first completion counts, and the result names its
    # own files.
    sealed = sealer.seal_json(_message(project, tmp_path, "a2").to_json())

    def second_after_the_claim_lapses() -> str:
        wait_until(lambda: client.exists(claim_key("a2")), "the first claim")
        client.delete(claim_key("a2"))
        return runtime.handle(sealed)

    outcomes = _side_by_side(lambda: runtime.handle(sealed), second_after_the_claim_lapses)
    assert sorted(outcomes) == [
        "a2: another delivery completed first; this result discarded",
        "a2: success",
    ]
    assert counter.read_text() == "ran\n" * 3
    result = JobResult.from_json(sealer.open_json(client.get(result_key("a2")) or b""))
    assert result.outputs is not None and result.failure is None
    # A worker whose visibility timeout is below the job's timeout says so in its log.
    short = WorkerRuntime(tmp_path / "other", settings, "short", visibility_timeout=50)
    request.addfinalizer(short.close)
    assert short.handle(sealer.seal_json(_message(project, tmp_path, "a3").to_json())) == (
        "a3: success"
    )
    entries: Any = client.xrange(log_key("a3"))
    lines = [sealer.open_json(f[b"d"])[1] for _, f in entries if b"d" in f]
    assert any("above this worker's visibility timeout (50s)" in line for line in lines)
    assert counter.read_text() == "ran\n" * 4

    # A message not sealed with the key is refused, never run.
    assert runtime.handle("not-a-sealed-message").startswith("refused a message")
    assert counter.read_text() == "ran\n" * 4


def _side_by_side(*actions: Callable[[], str]) -> list[str]:
    results: list[str] = []
    threads = [threading.Thread(target=lambda a=a: results.append(a())) for a in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_a_cancelled_attempt_stops_its_command_on_the_worker(
    direct_worker: Callable[..., DirectWorker],
    tmp_path: Path,
    clients: Callable[[str], redis.Redis],
) -> None:
    direct = direct_worker()
    project, settings, runtime, sealer = (
        direct.project,
        direct.settings,
        direct.runtime,
        direct.sealer,
    )
    client = clients(settings.broker_url)
    message = replace(_message(project, tmp_path, "c1"), argv=["sleep", "30"])
    started = time.monotonic()
    sealed = sealer.seal_json(message.to_json())
    outcomes: list[str] = []
    worker, errors = _in_background(lambda: outcomes.append(runtime.handle(sealed)))
    wait_until(lambda: client.exists(claim_key("c1")), "the claim")
    client.set(cancel_key("c1"), "1")  # what the run's side does when the job is cancelled
    worker.join(timeout=10)
    assert not errors, errors
    assert time.monotonic() - started < 10  # not the command's 30 s
    assert outcomes == ["c1: infrastructure"]
    result = JobResult.from_json(sealer.open_json(client.get(result_key("c1")) or b""))
    assert (result.failure, result.detail) == ("infrastructure", "cancelled by the run")


def test_a_commit_the_worker_cannot_fetch_fails_the_job_clearly(
    direct_worker: Callable[..., DirectWorker],
    tmp_path: Path,
    clients: Callable[[str], redis.Redis],
) -> None:
    direct = direct_worker()
    project, settings, runtime, sealer = (
        direct.project,
        direct.settings,
        direct.runtime,
        direct.sealer,
    )
    missing = replace(_message(project, tmp_path, "m1"), commit="0" * 40)
    assert runtime.handle(sealer.seal_json(missing.to_json())) == "m1: infrastructure"
    raw = clients(settings.broker_url).get(result_key("m1"))
    result = JobResult.from_json(sealer.open_json(raw or b""))
    assert result.detail == f"worker w: commit {'0' * 40} is not in {project.root}"
    nowhere = replace(_message(project, tmp_path, "m2"), repository=str(tmp_path / "nowhere"))
    assert runtime.handle(sealer.seal_json(nowhere.to_json())) == "m2: infrastructure"
    assert not (tmp_path / "deliveries.txt").exists()  # nothing ran
