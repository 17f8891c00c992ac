"""Lint a 500-job conveyor.yml: `conveyor lint` as a whole subprocess, start-up included.

For context, the same run also times the in-process parse + validate, Python's bare
start-up and the import of the CLI. Over the goal, it lists the packages whose imports
take the time (`python -X importtime`).

    .venv/bin/python bench/lint_500.py --repeat 5
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from common import (
    CONVEYOR,
    PYTHON,
    Figure,
    alternate,
    console,
    header,
    print_figures,
    print_samples,
    repeat_parser,
    time_command,
)
from conveyor.spec.loader import load_pipeline
from conveyor.steps.registry import STEP_PARAMS

JOBS = 500
GROUP = 10  # jobs per stage; each job needs one or two jobs of the stage before
GOAL_SECONDS = 0.5
CLI_IMPORT = "import conveyor.cli.app"


def job_name(index: int) -> str:
    return f"part-{index:03d}"


def job(index: int) -> dict[str, Any]:
    """A job with needs, env, inputs and outputs; every 25th has a matrix."""
    stage, slot = divmod(index, GROUP)
    spec: dict[str, Any] = {
        "run": [f"echo building part {index}", f"make -C src/part{index} all"],
        "env": {"PART": str(index), "STAGE": f"stage-{stage}", "VERBOSE": index % 3 == 0},
        "inputs": [f"src/part{index}/**/*.py", "pyproject.toml", "!**/*.md"],
        "outputs": [f"build/part{index}/**"],
        "timeout": "10m",
    }
    if stage > 0:
        previous = (stage - 1) * GROUP
        picks = {previous + slot, previous + (slot * 3) % GROUP}
        spec["needs"] = [job_name(pick) for pick in sorted(picks)]
    if index % 25 == 0:
        spec["matrix"] = {"python": ["3.11", "3.12"], "os": ["debian", "alpine"]}
    if index % 7 == 0:
        spec["retry"] = 2
        spec["tools"] = ["python3"]
    return spec


def spec_text() -> str:
    jobs = {job_name(index): job(index) for index in range(JOBS)}
    document = {
        "version": 1,
        "name": "lint-500",
        "env": {"CI": "true"},
        "defaults": {"timeout": "30m", "retry": 1},
        "jobs": jobs,
    }
    return yaml.safe_dump(document, sort_keys=False)


def parse_in_process(path: Path) -> float:
    started = time.perf_counter()
    loaded = load_pipeline(path, steps=STEP_PARAMS)
    took = time.perf_counter() - started
    if len(loaded.pipeline.jobs) != JOBS:
        raise RuntimeError(f"expected {JOBS} jobs, parsed {len(loaded.pipeline.jobs)}")
    return took


def import_time_by_package(path: Path) -> list[tuple[str, float]]:
    """Self time of every import `conveyor lint` makes, summed per top-level package."""
    argv = [PYTHON, "-X", "importtime", "-m", "conveyor", "lint", "-f", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    totals: dict[str, float] = defaultdict(float)
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, module = (part.strip() for part in line.removeprefix("import time:").split("|"))
        totals[module.split(".")[0]] += int(self_us) / 1e6
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)


def print_imports(path: Path, limit: int = 12) -> None:
    by_package = import_time_by_package(path)
    total = sum(seconds for _, seconds in by_package)
    console.print(f"[bold]`conveyor lint` imports: {total:.3f} s in all; heaviest packages[/]")
    for package, seconds in by_package[:limit]:
        console.print(f"  {package:<20} {seconds * 1000:7.1f} ms  {seconds / total:5.1%}")


def measure(repeat: int, *, imports: bool = False) -> list[Figure]:
    header(f"lint a {JOBS}-job conveyor.yml")
    with tempfile.TemporaryDirectory(prefix="bench-lint-") as scratch:
        path = Path(scratch) / "conveyor.yml"
        path.write_text(spec_text())
        figures = compare(path, repeat)
        if imports or figures[0].value > GOAL_SECONDS:
            print_imports(path)
    return figures


def compare(path: Path, repeat: int) -> list[Figure]:
    parse_in_process(path)  # the first call pays for pydantic's lazy set-up
    samples = alternate(
        {
            "conveyor lint": lambda: time_command([CONVEYOR, "lint", "-f", str(path)]),
            "python -c pass": lambda: time_command([PYTHON, "-c", "pass"]),
            f'python -c "{CLI_IMPORT}"': lambda: time_command([PYTHON, "-c", CLI_IMPORT]),
            "parse+validate in process": lambda: parse_in_process(path),
        },
        repeat,
    )
    lint = samples["conveyor lint"]
    lines = len(path.read_text().splitlines())
    print_samples(f"{JOBS} jobs, {lines} lines of YAML", list(samples.values()), lint)
    figures = [
        Figure("conveyor lint median", lint.median, "s", GOAL_SECONDS),
        Figure("parse+validate in process", samples["parse+validate in process"].median, "s"),
        Figure("python start-up", samples["python -c pass"].median, "s"),
        Figure("import conveyor.cli.app", samples[f'python -c "{CLI_IMPORT}"'].median, "s"),
    ]
    print_figures("lint", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument(
        "--imports", action="store_true", help="list the heaviest imports even within the goal"
    )
    args = parser.parse_args(argv)
    measure(args.repeat, imports=args.imports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
