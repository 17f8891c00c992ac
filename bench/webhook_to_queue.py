"""Webhook to queued run, and to its first job started: a signed GitHub push delivery
POSTed to `conveyor server`, timed until its run is in the queue (the answer comes once
the commit is fetched into the server's mirror and the entry is written) and until the
run's first job started (read from the store), over N deliveries.

Two contenders, alternating: a push of a new commit (the server fetches it from the
project's bare repository) and a push of a branch whose commit the mirror already holds
(no fetch: the floor of verification, parsing and the store). The issue's goal is
"webhook received to first job started <= 1 s". Each run finishes before the next
delivery, so no run waits for a worker.

    .venv/bin/python bench/webhook_to_queue.py --repeat 20
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from common import (
    PYTHON,
    Figure,
    Samples,
    clean_env,
    free_port,
    header,
    print_figures,
    print_samples,
)
from common import repeat_parser as _parser

SECRET = "bench-secret"
REPOSITORY = "acme/shop"
GOAL = 1.0  # seconds, webhook to first job started (issue 15)


def git(cwd: Path, *args: str) -> str:
    env = clean_env(
        GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="b@example.org",
        GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="b@example.org",
    )  # fmt: skip
    done = subprocess.run(
        ["git", "-C", os.fspath(cwd), *args], check=True, capture_output=True, text=True, env=env
    )
    return done.stdout.strip()


def spec(origin: Path) -> str:
    return (
        "version: 1\nname: shop\njobs:\n  build: {run: echo built}\n"
        f"forge:\n  kind: github\n  repository: {REPOSITORY}\n  clone_url: {origin}\n"
        "  statuses: false\n"
    )


def prepare(root: Path, rounds: int) -> tuple[Path, Path, list[str], str]:
    """The project, its bare origin with one new commit per round on branches new/<i>
    (none fetched yet), and the sha of main (fetched by the warm-up)."""
    origin = root / "origin.git"
    project = root / "project"
    project.mkdir()
    git(project, "init", "-q", "-b", "main")
    (project / "conveyor.yml").write_text(spec(origin))
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "first")
    git(root, "init", "-q", "--bare", os.fspath(origin))
    git(project, "push", "-q", os.fspath(origin), "HEAD:refs/heads/main")
    main = git(project, "rev-parse", "HEAD")
    shas = []
    for index in range(rounds):
        git(project, "checkout", "-q", "-B", f"new/{index}", "main")
        (project / "change.txt").write_text(f"{index}\n")
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", f"change {index}")
        shas.append(git(project, "rev-parse", "HEAD"))
        git(project, "push", "-q", os.fspath(origin), f"HEAD:refs/heads/new/{index}")
    return project, origin, shas, main


def start_server(project: Path, port: int) -> subprocess.Popen[bytes]:
    env = clean_env(CONVEYOR_FORGE_SECRET=SECRET)
    command = [PYTHON, "-m", "conveyor", "server", "--port", str(port), "-f", str(project)]
    server = subprocess.Popen(command, env=env, cwd=project, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.kill()
    raise RuntimeError("conveyor server did not start")


def deliver(client: httpx.Client, sha: str, branch: str) -> tuple[float, int]:
    """Seconds from sending the delivery to its answer, and the queue entry's id."""
    body = json.dumps(
        {
            "ref": f"refs/heads/{branch}", "before": "0" * 40, "after": sha,
            "deleted": False, "repository": {"full_name": REPOSITORY},
            "sender": {"login": "bench"},
        }
    ).encode()  # fmt: skip
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }
    started = time.perf_counter()
    answer = client.post("/hooks/github", content=body, headers=headers)
    elapsed = time.perf_counter() - started
    if answer.status_code != 202 or answer.json()["outcome"] != "queued":
        raise RuntimeError(f"delivery not queued: {answer.status_code} {answer.text}")
    return elapsed, int(answer.json()["queue_id"])


def first_job_started(project: Path, queue_id: int, sent_at: float) -> float:
    """Seconds from `sent_at` (wall clock) to the first job of the entry's run starting
    (or, for a job the cache restores, being restored); waits for the run to finish, so
    that the next delivery finds the workers idle."""
    database = project / ".conveyor" / "conveyor.db"
    deadline = time.monotonic() + 60
    started: float | None = None
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        while time.monotonic() < deadline:
            row = db.execute(
                "SELECT r.id, r.state, MIN(COALESCE(j.started_at, j.finished_at)) FROM run_queue q"
                " JOIN runs r ON r.id = q.run_id LEFT JOIN jobs j ON j.run_id = r.id"
                " WHERE q.id = ? GROUP BY r.id",
                (queue_id,),
            ).fetchone()
            if row is not None and row[2] is not None:
                started = row[2]
                if row[1] in ("success", "failed", "cancelled", "interrupted"):
                    return float(started) - sent_at
            time.sleep(0.005)
    raise RuntimeError(f"the run of queue entry {queue_id} did not start and finish in time")


def to_first_job(client: httpx.Client, project: Path, sha: str, branch: str) -> tuple[float, float]:
    sent_at = time.time()
    answered, queue_id = deliver(client, sha, branch)
    return answered, first_job_started(project, queue_id, sent_at)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def main() -> None:
    parser = _parser("A signed push delivery to the queued run, through `conveyor server`.")
    rounds = parser.parse_args().repeat
    header("Webhook to queued run")
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as temp:
        project, _origin, shas, main_sha = prepare(Path(temp), rounds)
        port = free_port()
        server = start_server(project, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                # Warm-up: the mirror is made, main fetched, the fork server started.
                to_first_job(client, project, main_sha, "main")
                fetched = Samples("new commit (fetched)")
                mirrored = Samples("commit already mirrored")
                fetched_job = Samples("new commit: first job started")
                mirrored_job = Samples("already mirrored: first job started")
                for index, sha in enumerate(shas):
                    answered, started = to_first_job(client, project, sha, f"new/{index}")
                    fetched.seconds.append(answered)
                    fetched_job.seconds.append(started)
                    answered, started = to_first_job(client, project, main_sha, f"again/{index}")
                    mirrored.seconds.append(answered)
                    mirrored_job.seconds.append(started)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    print_samples("delivery POSTed -> answered, its run queued (s)", [mirrored, fetched], mirrored)
    print_samples(
        "delivery POSTed -> the run's first job started (s)",
        [mirrored_job, fetched_job],
        mirrored_job,
    )
    print_figures(
        "Webhook to queued run, and to the first job started",
        [
            Figure("new commit: queued, median", fetched.median, "s"),
            Figure("new commit: queued, p95", p95(fetched.seconds), "s"),
            Figure("already mirrored: queued, median", mirrored.median, "s"),
            Figure("new commit: first job started, median", fetched_job.median, "s", GOAL),
            Figure("new commit: first job started, p95", p95(fetched_job.seconds), "s", GOAL),
            Figure("already mirrored: first job started, median", mirrored_job.median, "s", GOAL),
            Figure(
                "already mirrored: first job started, p95", p95(mirrored_job.seconds), "s", GOAL
            ),
        ],
    )


if __name__ == "__main__":
    main()
