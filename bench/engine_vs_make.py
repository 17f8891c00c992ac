"""Engine overhead: a 200-job DAG through `conveyor run` and through `make -j2`, side by side.

The DAG is 10 layers of 20 jobs; each job of layer k needs 2 or 3 jobs of layer k-1.
With `sleep 0.05` jobs and 2 at a time the ideal is 200 * 0.05 / 2 = 5 s; with `true`
jobs the difference to make, divided by 200, is Conveyor's overhead per job.

    .venv/bin/python bench/engine_vs_make.py --repeat 5 [--profile]
"""

from __future__ import annotations

import pstats
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from common import (
    CONVEYOR,
    PYTHON,
    Figure,
    Samples,
    alternate,
    clean_env,
    committed_repository,
    console,
    header,
    print_figures,
    print_samples,
    repeat_parser,
    time_command,
)

LAYERS = 10
WIDTH = 20
PARALLELISM = 2
SLEEP = 0.05
JOBS = LAYERS * WIDTH
IDEAL = JOBS * SLEEP / PARALLELISM
RATIO_GOAL = 1.1


def job_name(layer: int, index: int) -> str:
    return f"l{layer:02d}-j{index:02d}"


def needs_of(layer: int, index: int) -> list[str]:
    """2 or 3 jobs of the previous layer, deterministic and spread across its width."""
    if layer == 0:
        return []
    picks = [index, (index + 1) % WIDTH]
    if (index + layer) % 2 == 0:
        picks.append((index + 7) % WIDTH)
    return [job_name(layer - 1, pick) for pick in dict.fromkeys(picks)]


def dag() -> dict[str, list[str]]:
    """Job name -> the names it needs, in layer order."""
    return {
        job_name(layer, index): needs_of(layer, index)
        for layer in range(LAYERS)
        for index in range(WIDTH)
    }


def conveyor_spec(graph: dict[str, list[str]], command: str) -> str:
    jobs = {
        name: {"run": command, "cache": False, **({"needs": needs} if needs else {})}
        for name, needs in graph.items()
    }
    return yaml.safe_dump({"version": 1, "name": "dag", "jobs": jobs}, sort_keys=False)


def makefile(graph: dict[str, list[str]], command: str) -> str:
    lines = [f".PHONY: all {' '.join(graph)}", f"all: {' '.join(graph)}", ""]
    for name, needs in graph.items():
        lines += [f"{name}: {' '.join(needs)}".rstrip(), f"\t{command}", ""]
    return "\n".join(lines)


class Contest:
    """One command's DAG in a committed repository, runnable by Conveyor and by make."""

    def __init__(self, command: str, parent: Path, graph: dict[str, list[str]]) -> None:
        files = {
            "conveyor.yml": conveyor_spec(graph, command),
            "Makefile": makefile(graph, command),
        }
        parent.mkdir(parents=True, exist_ok=True)
        self.parent = parent
        self.repository = committed_repository(files, parent)

    def fresh_state_env(self) -> dict[str, str]:
        """A new, empty state folder: no run history, nothing to reuse."""
        state = tempfile.mkdtemp(prefix="state-", dir=self.parent)
        return clean_env(CONVEYOR_STATE_DIR=state)

    def conveyor_argv(self) -> list[str]:
        return [CONVEYOR, "run", "--parallelism", str(PARALLELISM), "-q"]

    def conveyor(self) -> float:
        return time_command(self.conveyor_argv(), cwd=self.repository, env=self.fresh_state_env())

    def make(self) -> float:
        return time_command(["make", f"-j{PARALLELISM}", "-s"], cwd=self.repository)


def compare(command: str, repeat: int, parent: Path) -> dict[str, Samples]:
    """Conveyor and make on the DAG; for no-op jobs also a 1-job run and the bare CLI."""
    contest = Contest(command, parent / command.split(maxsplit=1)[0], dag())
    contenders = {"conveyor": contest.conveyor, "make": contest.make}
    if command == "true":
        single = Contest(command, parent / "single", {job_name(0, 0): []})
        contenders["conveyor, 1 job"] = single.conveyor
        contenders["conveyor --version"] = lambda: time_command([CONVEYOR, "--version"])
    samples = alternate(contenders, repeat)
    title = f"{JOBS} jobs `{command}`, {LAYERS}x{WIDTH} DAG, {PARALLELISM} at a time"
    print_samples(title, list(samples.values()), baseline=samples["make"])
    return samples


def measure(repeat: int) -> list[Figure]:
    header("engine vs make: 200-job DAG")
    if shutil.which("make") is None:
        raise SystemExit("this benchmark compares with GNU make: apt-get install make")
    with tempfile.TemporaryDirectory(prefix="bench-dag-") as scratch:
        sleepy = compare(f"sleep {SLEEP}", repeat, Path(scratch))
        noop = compare("true", repeat, Path(scratch))
    console.print(f"ideal for the sleep DAG: {JOBS} x {SLEEP} s / {PARALLELISM} = {IDEAL:.1f} s")
    conveyor, make = sleepy["conveyor"].median, sleepy["make"].median
    noop_conveyor, noop_make = noop["conveyor"].median, noop["make"].median
    fixed = noop["conveyor, 1 job"].median
    figures = [
        Figure("sleep DAG: conveyor median", conveyor, "s"),
        Figure("sleep DAG: make -j2 median", make, "s"),
        Figure("sleep DAG: conveyor / make", conveyor / make, "x", RATIO_GOAL),
        Figure("sleep DAG: conveyor / ideal", conveyor / IDEAL, "x"),
        Figure(
            "no-op DAG: (conveyor - make) / job", (noop_conveyor - noop_make) / JOBS * 1e3, "ms"
        ),
        Figure("no-op DAG: conveyor / job", noop_conveyor / JOBS * 1e3, "ms"),
        Figure("no-op: run of 1 job (fixed cost)", fixed, "s"),
        Figure("no-op: (200 jobs - 1 job) / 199", (noop_conveyor - fixed) / (JOBS - 1) * 1e3, "ms"),
        Figure("conveyor --version (start-up)", noop["conveyor --version"].median, "s"),
    ]
    print_figures("engine overhead", figures)
    return figures


def profile_once(command: str, limit: int = 25) -> None:
    """One Conveyor run of the DAG under cProfile (main thread); prints the top functions."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
        contest = Contest(command, Path(scratch), dag())
        output = Path(scratch) / "run.prof"
        argv = [PYTHON, "-m", "cProfile", "-o", str(output), *contest.conveyor_argv()]
        took = time_command(argv, cwd=contest.repository, env=contest.fresh_state_env())
        console.print(f"[bold]profiled run of the `{command}` DAG: {took:.2f} s[/]")
        stats = pstats.Stats(str(output), stream=sys.stdout)
        # Conveyor's own functions by cumulative time say which step of a job costs what;
        # the top by internal time say which primitive (fork, open, SQL) it comes down to.
        stats.sort_stats("cumulative").print_stats("conveyor/", limit)
        stats.sort_stats("tottime").print_stats(limit)


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one Conveyor run of the no-op DAG"
    )
    args = parser.parse_args(argv)
    measure(args.repeat)
    if args.profile:
        profile_once("true")
    return 0


if __name__ == "__main__":
    sys.exit(main())
