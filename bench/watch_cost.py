"""The continuous watch's cost: 10 environments watched at 1 s resolution, in % of one core.

Ten environments, each a real builtin router in front of one replica of the tiny app of
tests/deploy/apps.py under the process runtime, deployed once. Then, alternating round by
round, two windows of `--seconds` (default 40):
- idle: nothing watches; the CPU time of the data plane (routers, supervisors, replicas)
  over the window is the baseline;
- watched: `conveyor watch --interval 1s` runs as its own process (its start-up, imports
  and first ticks excluded: the window opens after a warm-up); its CPU time (user +
  system) over the window is the watcher's cost, and the data plane's extra CPU time
  against the idle window is what answering the samples costs the routers.
Each figure is CPU seconds / wall seconds, in % of one core; medians over the rounds.
Every tick of the watched window must record one sample per environment.

    .venv/bin/python bench/watch_cost.py --repeat 3 [--seconds 40] [--profile]

`--profile` also runs 30 ticks in this process under cProfile and prints the top entries.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from common import CONVEYOR, Figure, clean_env, console, header, print_figures, repeat_parser
from conveyor.observe.watch import Watcher
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.store.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.deploy
from tests.deploy.apps import build_app, project_with_spec

ENVIRONMENTS = 10
INTERVAL = 1.0
WARM_UP = 4.0  # seconds between the watcher's start and the window's opening
GOAL_PERCENT = 5.0
ENVIRONMENT = """\
  env{index:02d}:
    replicas: 1
    health:
      readiness: {{path: /healthz, interval: 1s}}
      liveness: {{path: /healthz, interval: 5s}}
    drain: 0.1s
"""


@dataclass(frozen=True)
class Round:
    idle_plane: float  # % of one core
    watched_plane: float
    watcher: float
    samples_per_tick: float

    @property
    def total(self) -> float:
        """The watcher plus what it costs the data plane to answer it."""
        return self.watcher + max(0.0, self.watched_plane - self.idle_plane)


def make_fleet(root: Path) -> Project:
    spec = "version: 1\njobs:\n  noop: {run: 'true'}\nenvironments:\n" + "".join(
        ENVIRONMENT.format(index=index) for index in range(ENVIRONMENTS)
    )
    return project_with_spec(root / "project", spec)


def names() -> list[str]:
    return [f"env{index:02d}" for index in range(ENVIRONMENTS)]


@contextmanager
def deployed(root: Path) -> Iterator[tuple[Project, Store]]:
    project = make_fleet(root)
    with project.open_store() as store:
        image = build_app(project, root, "v1")
        try:
            for name in names():
                started = time.monotonic()
                envs.deploy(project, store, name, image, actor="bench")
                console.print(f"deployed {name} in {time.monotonic() - started:.1f} s")
            yield project, store
        finally:
            for name in names():
                envs.stop_environment(project, store, name)


def plane_processes(state_dir: Path) -> list[psutil.Process]:
    """The routers and supervisors of the fleet (their command names the state folder),
    and every process under them (the replicas)."""
    found: dict[int, psutil.Process] = {}
    marker = str(state_dir)
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if marker in cmdline and process.pid != os.getpid():
            found[process.pid] = process
            for child in _children(process):
                found[child.pid] = child
    return list(found.values())


def _children(process: psutil.Process) -> Iterable[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def idle_window(plane: list[psutil.Process], seconds: float) -> float:
    before, started = cpu_seconds(plane), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(plane) - before) / (time.monotonic() - started)


def watched_window(
    project: Project, store: Store, plane: list[psutil.Process], seconds: float
) -> tuple[float, float, float]:
    """(data plane %, watcher %, samples per tick) over a window of `seconds`."""
    command = [CONVEYOR, "watch", "--interval", f"{INTERVAL:g}s"]
    watcher = subprocess.Popen(
        command,
        cwd=project.directory,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(WARM_UP)
        me = psutil.Process(watcher.pid)
        window_start = time.time()
        before, plane_before, started = cpu_seconds([me]), cpu_seconds(plane), time.monotonic()
        time.sleep(seconds)
        spent, plane_spent = cpu_seconds([me]) - before, cpu_seconds(plane) - plane_before
        wall = time.monotonic() - started
    finally:
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    if watcher.returncode != 0:
        raise RuntimeError(f"conveyor watch exited {watcher.returncode}: {err}")
    rows = sum(len(store.ledger.samples.of(name, since=window_start)) for name in names())
    ticks = max(1.0, wall / INTERVAL)
    return 100 * plane_spent / wall, 100 * spent / wall, rows / ticks


def profile(project: Project, store: Store) -> None:
    watcher = Watcher(project, store)
    watcher.tick()  # the planes are made at the first tick
    profiler = cProfile.Profile()
    started = time.process_time()
    profiler.enable()
    for _ in range(30):
        watcher.tick()
    profiler.disable()
    per_tick = (time.process_time() - started) / 30
    watcher.lease.release()
    console.print(f"in process: {per_tick * 1000:.1f} ms of CPU per tick of 10 environments")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def main() -> None:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument("--seconds", type=float, default=40.0, help="window length")
    parser.add_argument("--profile", action="store_true", help="cProfile 30 ticks too")
    args = parser.parse_args()
    header("Continuous watch: 10 environments at 1 s resolution, % of one core")
    rounds = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-watch-") as temporary,
        deployed(Path(temporary)) as (project, store),
    ):
        plane = plane_processes(project.state_dir)
        console.print(f"data plane: {len(plane)} processes")
        if args.profile:
            profile(project, store)
        for number in range(args.repeat):
            idle = idle_window(plane, args.seconds)
            watched, own, per_tick = watched_window(project, store, plane, args.seconds)
            rounds.append(Round(idle, watched, own, per_tick))
            console.print(
                f"round {number + 1}: watcher {own:.2f} %, data plane {idle:.2f} % idle "
                f"/ {watched:.2f} % watched, {per_tick:.1f} samples per tick"
            )
    report(rounds)


def report(rounds: list[Round]) -> None:
    def median(values: Iterable[float]) -> float:
        return statistics.median(values)

    print_figures(
        "Medians (% of one core; 100 % = one core busy)",
        [
            Figure("data plane, idle (baseline)", median(r.idle_plane for r in rounds), "%"),
            Figure("data plane, watched", median(r.watched_plane for r in rounds), "%"),
            Figure("watcher process", median(r.watcher for r in rounds), "%", GOAL_PERCENT),
            Figure("watcher + data plane's extra", median(r.total for r in rounds), "%"),
            Figure("samples per tick", median(r.samples_per_tick for r in rounds), "rows"),
        ],
    )


if __name__ == "__main__":
    main()
