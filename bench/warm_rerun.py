"""Warm rerun: the sample pipeline (examples/shop) run again on its unchanged commit.

Its CI part: `conveyor run --job push` (lint, gates, tests, the image, its scan, signing
and push). The jobs after it test and deploy a running system, which is never cached by
design, and production waits for a human approval, so a whole-pipeline rerun measures
them, not the cache.

One cold run fills the cache; each timed rerun is a whole `conveyor run -q` subprocess,
start-up included, and must find every job `cached` (checked with `conveyor status`), but
for the steps that do all their work on every run (scan-image, sign, push: their answer
depends on today's database and the registry), which must succeed without executing a
command (the step table says which steps those are: `every_run_reason`).

    .venv/bin/python bench/warm_rerun.py --repeat 5
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from common import (
    CONVEYOR,
    Figure,
    Samples,
    alternate,
    clean_env,
    console,
    header,
    print_figures,
    print_samples,
    repeat_parser,
    time_command,
)
from conveyor.engine.step import every_run_reason
from conveyor.service.demo import demo_env, find_sample, make_repository, prepare_supply_chain
from conveyor.service.project import Project
from conveyor.steps.registry import STEPS

GOAL_SECONDS = 0.5


LAST_CI_JOB = "push"
CACHED_OR_UNSELECTED = frozenset({"cached", "skipped"})


def every_run_jobs(spec: Path) -> frozenset[str]:
    """The jobs whose step does all its work on every run (their answer depends on the
    day's database or the registry): they succeed on a warm rerun, never `cached`."""
    jobs = yaml.safe_load(spec.read_text())["jobs"]
    return frozenset(
        name
        for name, job in jobs.items()
        if "uses" in job and every_run_reason(STEPS[job["uses"]]) is not None
    )


class NotCachedError(RuntimeError):
    """A warm rerun executed a job: the measurement is not of a warm rerun."""


class ShopRepository:
    """The sample service in a fresh git repository, with its own state folder."""

    def __init__(self, parent: Path) -> None:
        self.repository = make_repository(find_sample(), parent / "shop")
        # A signing key and a vulnerability database, as the demo gives its repository.
        prepare_supply_chain(Project.locate(self.repository / "conveyor.yml"), find_sample())
        self.env = clean_env(**demo_env())

    def run(self) -> float:
        argv = [CONVEYOR, "run", "-q", "--job", LAST_CI_JOB]
        return time_command(argv, cwd=self.repository, env=self.env)

    def job_states(self) -> dict[str, tuple[str, str]]:
        """The state and detail of each job of the latest run, from `conveyor status -o json`."""
        done = subprocess.run(
            [CONVEYOR, "status", "-o", "json"],
            cwd=self.repository,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        jobs = json.loads(done.stdout)["jobs"]
        return {job["job_id"]: (job["state"], job.get("detail") or "") for job in jobs}

    def warm_run(self) -> float:
        took = self.run()
        found = self.job_states()
        states = {job: state for job, (state, _) in found.items()}
        details = {job: detail for job, (_, detail) in found.items()}
        # jobs outside `--job push`'s selection are `skipped`; every selected one is cached,
        # but for the every-run steps, which succeed from their finalize alone
        every_run = every_run_jobs(self.repository / "conveyor.yml")
        not_cached = {
            job: f"{state} ({details[job]})"
            for job, state in states.items()
            if state not in CACHED_OR_UNSELECTED and not (state == "success" and job in every_run)
        }
        if "cached" not in states.values() or not_cached:
            raise NotCachedError(f"warm rerun did not come from the cache: {not_cached}")
        return took


def measure(repeat: int) -> list[Figure]:
    header("warm rerun of the sample pipeline")
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as scratch:
        shop = ShopRepository(Path(scratch))
        cold = Samples("cold run (once)", [shop.run()])
        jobs = sum(state != "skipped" for state, _ in shop.job_states().values())
        samples = alternate(
            {
                "warm rerun": shop.warm_run,
                "conveyor --version": lambda: time_command([CONVEYOR, "--version"]),
            },
            repeat,
        )
    warm, startup = samples["warm rerun"], samples["conveyor --version"]
    print_samples(
        f"examples/shop, {jobs} jobs, cached or every-run on rerun", [cold, warm, startup], warm
    )
    figures = [
        Figure("warm rerun median", warm.median, "s", GOAL_SECONDS),
        Figure("warm rerun minus start-up", warm.median - startup.median, "s"),
        Figure("cold run", cold.median, "s"),
    ]
    print_figures("warm rerun", figures)
    console.print(f"all {jobs} jobs cached, or every-run steps, in each of the {repeat} reruns")
    return figures


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    measure(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
