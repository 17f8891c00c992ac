"""Dispatch through Celery: 1,000 no-op jobs on two workers against the local executor.

The same pipeline of independent `true` jobs (cache off) runs through `conveyor run` with
`executor: local` and with `executor: celery`, alternating, at the same parallelism. Two
`conveyor worker` processes (folders of their own, `--concurrency` slots each) take the
celery run's jobs from a real Redis; artifacts go to a real registry (docker-registry)
when it is installed, else to an OCI layout folder. The difference of the medians divided
by the number of jobs is what Celery dispatch adds per job (goal: <= 20 ms).

    .venv/bin/python bench/celery_dispatch.py --repeat 3 [--jobs 1000]
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

import redis
import yaml

from common import (
    CONVEYOR,
    PYTHON,
    Figure,
    alternate,
    clean_env,
    committed_repository,
    console,
    free_port,
    header,
    print_figures,
    print_samples,
    repeat_parser,
    time_command,
)
from conveyor.engine.workers.sealing import new_key

PARALLELISM = 4
WORKER_SLOTS = 2  # per worker; two workers: as many slots as the run's parallelism
GOAL_MS = 20.0
READY_SECONDS = 60.0


def spec(jobs: int, executor: str) -> str:
    pipeline = {
        "version": 1,
        "name": "dispatch",
        "defaults": {"executor": executor},
        "jobs": {f"j{index:04d}": {"run": "true", "cache": False} for index in range(jobs)},
    }
    return yaml.safe_dump(pipeline, sort_keys=False)


@contextmanager
def process(
    argv: list[str],
    log: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        started = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd, env=env
        )
    try:
        yield started
    finally:
        os.killpg(started.pid, signal.SIGKILL)
        started.wait()


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def services(stack: ExitStack, scratch: Path) -> dict[str, str]:
    """Redis, the artifact store and the key: the settings both sides read."""
    if shutil.which("redis-server") is None:
        raise SystemExit("this benchmark needs redis-server: apt-get install redis-server")
    port = free_port()
    stack.enter_context(
        process(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir",
             str(scratch), "--save", "", "--appendonly", "no"],
            scratch / "redis.log",
        )
    )  # fmt: skip
    wait_for(lambda: _answers(port), "redis-server")
    artifacts = f"oci:{scratch / 'artifacts'}"
    if shutil.which("docker-registry"):
        registry_port = free_port()
        config = scratch / "registry.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {scratch / 'registry'}\n"
            f"http:\n  addr: 127.0.0.1:{registry_port}\n"
        )
        stack.enter_context(
            process(["docker-registry", "serve", str(config)], scratch / "registry.log")
        )
        wait_for(lambda: _answers(registry_port), "docker-registry")
        artifacts = f"http://127.0.0.1:{registry_port}"
    return {
        "CONVEYOR_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "CONVEYOR_ARTIFACTS": artifacts,
        "CONVEYOR_WORKER_KEY": new_key().decode(),
    }


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_workers(stack: ExitStack, scratch: Path, env: dict[str, str]) -> None:
    logs = []
    for name in ("first", "second"):
        folder = scratch / name
        folder.mkdir()
        log = folder / "worker.log"
        argv = [PYTHON, "-m", "conveyor", "worker", "--queues", "default", "--name", name,
                "--concurrency", str(WORKER_SLOTS), "--folder", str(folder / "state")]  # fmt: skip
        stack.enter_context(process(argv, log, cwd=folder, env=env))
        logs.append(log)
    for log in logs:
        wait_for(lambda log=log: " ready." in log.read_text(errors="replace"), f"{log}")


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument("--jobs", type=int, default=1000, help="no-op jobs per run")
    args = parser.parse_args(argv)
    header(f"Celery dispatch: {args.jobs} no-op jobs, two workers")
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as scratch_name, ExitStack() as stack:
        scratch = Path(scratch_name)
        settings = services(stack, scratch)
        env = clean_env(**settings)
        start_workers(stack, scratch, env)
        repositories = {
            executor: committed_repository(
                {"conveyor.yml": spec(args.jobs, executor)}, scratch / executor
            )
            for executor in ("local", "celery")
        }

        def run(executor: str) -> float:
            state = tempfile.mkdtemp(prefix="state-", dir=scratch)
            command = [CONVEYOR, "run", "--parallelism", str(PARALLELISM), "-q"]
            run_env = {**env, "CONVEYOR_STATE_DIR": state}
            return time_command(command, cwd=repositories[executor], env=run_env)

        broker = redis.Redis.from_url(settings["CONVEYOR_BROKER_URL"])
        commands_before = broker.info("stats")["total_commands_processed"]
        samples = alternate({"local": lambda: run("local"), "celery": lambda: run("celery")},
                            args.repeat)  # fmt: skip
        commands = broker.info("stats")["total_commands_processed"] - commands_before
        broker.close()
    title = f"{args.jobs} no-op jobs, {PARALLELISM} at a time; 2 workers x {WORKER_SLOTS} slots"
    print_samples(title, list(samples.values()), baseline=samples["local"])
    local, celery = samples["local"].median, samples["celery"].median
    figures = [
        Figure("local executor: per job", local / args.jobs * 1e3, "ms"),
        Figure("celery executor: per job", celery / args.jobs * 1e3, "ms"),
        Figure("celery - local: added per job", (celery - local) / args.jobs * 1e3, "ms", GOAL_MS),
        Figure("celery / local", celery / local, "x"),
        Figure("Redis commands per celery job", commands / (args.jobs * args.repeat), ""),
    ]
    print_figures("Celery dispatch overhead", figures)
    console.print(f"artifacts: {settings['CONVEYOR_ARTIFACTS'].split(':')[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
