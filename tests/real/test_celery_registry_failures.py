"""The registry that carries a job's files between the run's side and a worker, stopped
and started for real while jobs travel: down when a job is sent, down when a worker
fetches or stores the job's files, and restarted mid-job.

It reuses the Redis and worker fixtures of test_celery_workers.py; the registry here is
one this module can stop and start again on the same port and storage. The registry
client's own retries (5 attempts, jittered backoff from 0.25 s: 1.9 to 3.75 s in all)
are what an outage must fit in; beyond them the job fails (`infrastructure`).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from conftest import GitProject, MakeProject, run_cli, wait_until
from conveyor.states import FailureClass, JobState, RunState
from real import test_celery_workers as celery_workers
from real.conftest import free_port
from real.test_celery_workers import RedisServer, Workers, _in_background
from servers import stop_server, wait_until_answering

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

# The fixtures of test_celery_workers.py, for the tests here (pytest finds a fixture among
# a module's attributes, whatever module defined it).
broker = celery_workers.broker
clients = celery_workers.clients
worker_env = celery_workers.worker_env
workers = celery_workers.workers


@dataclass
class RegistryServer:
    """docker-registry on a fixed port and storage, so a restart is the same registry."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            pytest.fail("docker-registry is not installed: apt-get install -y docker-registry")
        config = self.folder / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.folder / 'storage'}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
        )
        log_path = self.folder / "registry.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
        wait_until_answering(self.process, f"{self.url}/v2/", "docker-registry", log_path)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_server(self.process)


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[RegistryServer]:
    folder = tmp_path / "registry"
    folder.mkdir()
    server = RegistryServer(folder, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def registry(registry_server: RegistryServer) -> str:
    """The registry `worker_env` hands to both sides: this module's, which it can restart."""
    return registry_server.url


# `make` runs on the run's machine, so `use` always has files to send (its input); `use`
# runs on a worker, counts its runs in a file outside the workspace, and touches
# `finished` when its command is done (just before the worker stores its files).
PIPELINE = """\
version: 1
jobs:
  make:
    run: echo made > made.txt
    outputs: [made.txt]
  use:
    executor: {executor}
    needs: [make]
    run:
      - echo ran >> {ran}
      - sleep 1
      - cat made.txt > used.txt
      - touch {finished}
    outputs: [used.txt]
"""
UNREACHABLE = "is unreachable after 5 attempts: ConnectError"


@dataclass(frozen=True)
class Job:
    project: GitProject
    ran: Path  # a line per run of the command
    finished: Path

    def runs(self) -> int:
        return len(self.ran.read_text().splitlines()) if self.ran.exists() else 0


def _job(git_project: MakeProject, tmp_path: Path, executor: str = "celery") -> Job:
    ran, finished = tmp_path / f"ran-{executor}.txt", tmp_path / f"finished-{executor}"
    spec = PIPELINE.format(executor=executor, ran=ran, finished=finished)
    return Job(git_project(spec), ran, finished)


def _failed_clearly(job: Job, run_id: int, message: str) -> None:
    """`use` failed (`infrastructure`) with `message` as its detail and in its log, and no
    traceback anywhere."""
    record = job.project.jobs(run_id)["use"]
    assert (record.state, record.failure) == (JobState.FAILED, FailureClass.INFRASTRUCTURE)
    assert record.detail is not None
    assert record.detail.startswith(message), record.detail
    log = job.project.log(run_id, "use")
    assert message in log
    assert "Traceback" not in log


def test_a_registry_down_when_a_job_is_sent_fails_it_before_any_worker_runs_it(
    git_project: MakeProject,
    tmp_path: Path,
    workers: Workers,
    registry_server: RegistryServer,
    broker: RedisServer,
    clients: Callable[[str], redis.Redis],
) -> None:
    only = workers.start("only", "default")
    workers.wait_ready()
    job = _job(git_project, tmp_path)
    registry_server.stop()
    cli = run_cli(["run"], cwd=job.project.root)  # run 1 of a new project
    message = f"could not send the job's files to the workers: registry at {registry_server.url}"
    assert cli.exit_code == 1
    assert f"✗ use      failed {message} {UNREACHABLE}" in cli.stdout
    assert "Traceback" not in cli.stdout + cli.stderr
    _failed_clearly(job, 1, message)
    # Nothing was sent: no attempt in Redis, the command never ran.
    assert not list(clients(broker.url).scan_iter("conveyor:attempt:*"))
    assert job.runs() == 0
    assert "Traceback" not in only.text()


def test_a_registry_down_when_the_worker_fetches_the_files_fails_the_job_unrun(
    git_project: MakeProject,
    tmp_path: Path,
    workers: Workers,
    registry_server: RegistryServer,
    broker: RedisServer,
    clients: Callable[[str], redis.Redis],
) -> None:
    job = _job(git_project, tmp_path)
    client = clients(broker.url)

    def stop_it_once_the_job_waits_then_start_a_worker() -> None:
        # The task is queued only after its files are stored: they are in the registry.
        wait_until(lambda: client.llen("default"), "the job in the queue")
        registry_server.stop()
        workers.start("only", "default")

    thread, errors = _in_background(stop_it_once_the_job_waits_then_start_a_worker)
    outcome = job.project.run()
    thread.join(timeout=30)
    assert not errors, errors
    assert outcome.state is RunState.FAILED
    message = f"worker only: could not fetch the job's files: registry at {registry_server.url}"
    _failed_clearly(job, outcome.run_id, message)
    assert job.runs() == 0
    assert "Traceback" not in workers.started[0].text()


def test_a_registry_down_when_the_worker_stores_the_files_fails_the_job_once(
    git_project: MakeProject,
    tmp_path: Path,
    workers: Workers,
    registry_server: RegistryServer,
) -> None:
    only = workers.start("only", "default")
    workers.wait_ready()
    job = _job(git_project, tmp_path)

    def stop_it_once_the_command_runs() -> None:
        wait_until(job.ran.exists, "the command to run")
        registry_server.stop()

    thread, errors = _in_background(stop_it_once_the_command_runs)
    outcome = job.project.run()
    thread.join(timeout=30)
    assert not errors, errors
    assert outcome.state is RunState.FAILED
    message = f"worker only: could not store the job's files: registry at {registry_server.url}"
    _failed_clearly(job, outcome.run_id, message)
    assert UNREACHABLE in (job.project.jobs(outcome.run_id)["use"].detail or "")
    assert job.runs() == 1  # not sent again
    assert "Traceback" not in only.text()
    # The registry back, the same worker runs the job again in a new run.
    registry_server.start()
    again = job.project.run()
    assert again.state is RunState.SUCCESS, job.project.jobs(again.run_id)
    assert job.runs() == 2


def test_a_registry_restart_mid_job_is_ridden_out_and_matches_a_local_run(
    git_project: MakeProject,
    tmp_path: Path,
    workers: Workers,
    registry_server: RegistryServer,
) -> None:
    local = _job(git_project, tmp_path, "local")
    expected = local.project.run()
    assert expected.state is RunState.SUCCESS
    workers.start("only", "default")
    workers.wait_ready()
    job = _job(git_project, tmp_path)
    restarted: list[float] = []

    def restart_it_as_the_worker_stores_the_files() -> None:
        wait_until(job.ran.exists, "the command to run")
        registry_server.stop()
        wait_until(job.finished.exists, "the command to finish")  # the worker stores now
        time.sleep(OUTAGE_AFTER_THE_COMMAND)
        restarted.append(time.time())
        registry_server.start()

    thread, errors = _in_background(restart_it_as_the_worker_stores_the_files)
    outcome = job.project.run()
    thread.join(timeout=30)
    assert not errors, errors
    assert outcome.state is RunState.SUCCESS, job.project.jobs(outcome.run_id)
    assert job.runs() == 1
    assert _outputs(job.project, outcome.run_id) == _outputs(local.project, expected.run_id)
    # The outage did cover the worker's store: its command ended before the restart and
    # its files reached the registry after it.
    assert job.finished.stat().st_mtime < restarted[0]
    tags = registry_server.folder / "storage" / TAGS
    stored = [link.stat().st_mtime for link in tags.glob("out-*/current/link")]
    assert len(stored) == 1 and stored[0] >= restarted[0]


# Under the registry client's shortest retry window (about 1.9 s): ridden out.
OUTAGE_AFTER_THE_COMMAND = 0.5
TAGS = "docker/registry/v2/repositories/conveyor/job-files/_manifests/tags"


def _outputs(project: GitProject, run_id: int) -> dict[str, str | None]:
    return {job_id: job.outputs_blob for job_id, job in project.jobs(run_id).items()}
