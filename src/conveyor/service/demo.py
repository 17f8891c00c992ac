"""The demo: the sample service, copied into a fresh git repository, through its pipeline.

Later stages (gates, image, staging, release) extend this script as they land.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conveyor.engine.report import Reporter
from conveyor.errors import ConveyorError
from conveyor.service.project import Project
from conveyor.service.runs import RunOptions, RunOutcome, execute_run

_IGNORED = shutil.ignore_patterns(
    ".venv",
    "__pycache__",
    "*.pyc",
    "shop.db",
    ".conveyor",
    "dist",
    "reports",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
)
DEMO_AUTHOR = ("Dana Developer", "dana@example.com")


@dataclass(frozen=True)
class DemoResult:
    repository: Path
    runs: list[RunOutcome]


def find_sample(explicit: Path | None = None) -> Path:
    candidates = [explicit] if explicit else []
    candidates.append(Path(__file__).resolve().parents[3] / "examples" / "shop")
    for candidate in candidates:
        if candidate is not None and (candidate / "conveyor.yml").is_file():
            return candidate
    raise ConveyorError(
        "cannot find the sample service (examples/shop)",
        hint="run the demo from a Conveyor source checkout, or pass --sample PATH",
    )


def make_repository(sample: Path, destination: Path | None = None) -> Path:
    """Copy the sample into a new git repository with one commit on `main`."""
    target = destination or Path(tempfile.mkdtemp(prefix="conveyor-demo-")) / "shop"
    shutil.copytree(sample, target, ignore=_IGNORED)
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "Shop: first version")
    return target


def _git(repository: Path, *args: str) -> None:
    name, email = DEMO_AUTHOR
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    done = subprocess.run(
        ["git", *args], cwd=repository, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ConveyorError(f"git {' '.join(args)} failed: {done.stderr.strip()}")


def demo_env() -> dict[str, str]:
    """Jobs find this interpreter's tools (python, pytest, ruff) first on PATH."""
    bin_dir = str(Path(sys.executable).parent)
    return {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def run_demo(
    reporter: Reporter,
    announce: Callable[[str], None],
    *,
    sample: Path | None = None,
    destination: Path | None = None,
) -> DemoResult:
    repository = make_repository(find_sample(sample), destination)
    announce(f"1. a fresh repository with the sample service: {repository}")
    project = Project.locate(repository / "conveyor.yml")
    options = RunOptions(spec=project.spec_path, actor="demo", extra_env=demo_env())
    first = execute_run(project, options, reporter)
    runs = [first]
    if first.state.value == "success":
        announce("2. the same commit again: every job comes from the content-addressed cache")
        runs.append(execute_run(project, options, reporter))
    return DemoResult(repository=repository, runs=runs)
