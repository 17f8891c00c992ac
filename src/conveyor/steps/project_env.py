"""The project's own Python environment, for the jobs that run its code (its tests).

A virtualenv with the project's dependencies (pyproject.toml's `[project]` table and
chosen extras, or requirements files) and the tools the step needs (pytest, pytest-cov),
built once per set of dependency files and kept by their digest under the state folder:
`<state>/envs/python/<digest>/`. A job runs in it with its `bin/` first on PATH and no
PYTHONPATH or user site-packages, so neither the host's packages nor Conveyor's own
leak into the project's tests, and the job log says which interpreter ran.

Built in place under a file lock (not in a temp folder then renamed: a virtualenv's
scripts carry its absolute path); a `.complete` marker says a build finished, so one
interrupted half-way is built again.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.step import StepContext
from conveyor.errors import ConveyorError
from conveyor.spec.detect.dependencies import normalize, requirement_name
from conveyor.spec.types import WorkspacePath

ENVS_DIR = "envs/python"
COMPLETE = ".complete"
_PYTHON_NAMES = ("python", "python3")
_LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")


class VenvParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    dependencies: list[WorkspacePath] = Field(
        min_length=1,
        description="pyproject.toml (its [project] dependencies) and/or requirements files.",
    )
    extras: list[str] = Field(
        default_factory=list, description="Optional-dependency groups of pyproject.toml."
    )
    packages: list[str] = Field(
        default_factory=list, description="More requirement specifiers, e.g. pytest-django."
    )
    pythonpath: list[WorkspacePath] = Field(
        default_factory=list,
        description="Folders of the checkout the tests import from, e.g. src (a src layout).",
    )
    python: str | None = Field(
        default=None,
        description="The interpreter that makes the environment, e.g. python3.12 (found on "
        "PATH); default: the Python Conveyor runs on.",
    )


@dataclass(frozen=True)
class ProjectEnv:
    root: Path
    interpreter: str  # the base interpreter it was made from
    reused: bool
    pythonpath: tuple[Path, ...] = ()  # folders of the checkout, e.g. <workspace>/src

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k not in _LEAKY}
        env["VIRTUAL_ENV"] = str(self.root)
        env["PATH"] = os.pathsep.join([str(self.root / "bin"), base.get("PATH", os.defpath)])
        env["PYTHONNOUSERSITE"] = "1"
        if self.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(str(path) for path in self.pythonpath)
        return env

    def command(self, argv: list[str]) -> list[str]:
        """`python -m pytest` runs this environment's python."""
        if argv and argv[0] in _PYTHON_NAMES:
            return [str(self.python), *argv[1:]]
        return argv


@dataclass(frozen=True)
class _Plan:
    """What goes into the environment: pip arguments, and the digest naming it."""

    pip_args: list[str]
    specifiers: list[str]  # from pyproject.toml, written to a requirements file
    summary: str
    digest: str


def base_interpreter(params: VenvParams, ctx: StepContext) -> str:
    if params.python is None:
        # Conveyor's own interpreter, but the base one: a venv made from a venv's python
        # would see nothing more, yet depend on Conveyor's venv staying where it is.
        return str(getattr(sys, "_base_executable", None) or sys.executable)
    found = ctx.which(params.python)
    if found is None:
        raise ConveyorError(
            f"{ctx.job_id}: venv.python {params.python!r} is not on the job's PATH",
            hint="install it, or leave venv.python out to use the Python Conveyor runs on",
        )
    return found


def plan_env(params: VenvParams, workspace: Path, interpreter: str, required: list[str]) -> _Plan:
    """Reads the dependency files (nothing is installed yet)."""
    digest = hashlib.sha256()
    real = os.path.realpath(interpreter)
    digest.update(f"python {real} {_stamp(real)}\n".encode())
    pip_args: list[str] = []
    specifiers: list[str] = []
    named: set[str] = set()
    for name in params.dependencies:
        path = workspace / name
        if Path(name).name == "pyproject.toml":
            found = _pyproject_specifiers(path, name, params.extras)
            specifiers += found
            digest.update(f"pyproject {name} {params.extras}\n{found}\n".encode())
        else:
            text = _read(path, name)
            digest.update(f"requirements {name}\n{_with_includes(workspace, name, 0)}\n".encode())
            pip_args += ["-r", str(path)]
            named |= {n for n in map(requirement_name, text.splitlines()) if n}
    named |= {n for n in map(requirement_name, specifiers) if n}
    extra = list(params.packages) + [p for p in required if normalize(p) not in named]
    specifiers += extra
    digest.update(f"packages {sorted(specifiers)}\n".encode())
    summary = ", ".join([*params.dependencies, *(f"+{p}" for p in extra)])
    if params.extras:
        summary += f" (extras: {', '.join(params.extras)})"
    return _Plan(pip_args, specifiers, summary, digest.hexdigest()[:20])


def _stamp(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def _read(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConveyorError(f"venv.dependencies: cannot read {name}: {error}") from None


def _pyproject_specifiers(path: Path, name: str, extras: list[str]) -> list[str]:
    try:
        data = tomllib.loads(_read(path, name))
    except tomllib.TOMLDecodeError as error:
        raise ConveyorError(f"{name}: not valid TOML ({error})") from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise ConveyorError(f"{name} has no [project] table to take dependencies from")
    found = [d for d in project.get("dependencies", []) if isinstance(d, str)]
    groups = project.get("optional-dependencies", {})
    for extra in extras:
        group = groups.get(extra) if isinstance(groups, dict) else None
        if not isinstance(group, list):
            raise ConveyorError(f"{name} has no optional-dependencies group {extra!r}")
        found += [d for d in group if isinstance(d, str)]
    return found


def _with_includes(workspace: Path, name: str, depth: int) -> str:
    """A requirements file's text and the text of the files it includes (-r, -c)."""
    text = _read(workspace / name, name)
    parts = [text]
    for line in text.splitlines():
        words = line.split()
        if depth < 5 and len(words) == 2 and words[0] in ("-r", "-c", "--requirement"):
            included = (Path(name).parent / words[1]).as_posix()
            if not included.startswith("/") and ".." not in included.split("/"):
                parts.append(_with_includes(workspace, included, depth + 1))
    return "\n".join(parts)


async def ensure_project_env(
    params: VenvParams, ctx: StepContext, required: list[str]
) -> ProjectEnv:
    """The environment for these dependencies, built now if it is not there yet."""
    interpreter = base_interpreter(params, ctx)
    plan = plan_env(params, ctx.workspace, interpreter, required)
    root = envs_dir(ctx) / plan.digest
    started = time.monotonic()
    lock = await asyncio.to_thread(_lock, root.with_suffix(".lock"))
    try:
        reused = (root / COMPLETE).is_file()
        if not reused:
            ctx.say(f"{ctx.job_id}: building the project's Python environment: {plan.summary}")
            await _build(ctx, root, interpreter, plan)
    finally:
        _unlock(lock)
    pythonpath = tuple(ctx.workspace / path for path in params.pythonpath)
    project = ProjectEnv(root, interpreter, reused, pythonpath)
    how = "reused" if reused else f"built in {time.monotonic() - started:.1f}s"
    ctx.say(
        f"{ctx.job_id}: runs in the project's environment {root} ({how}; Python from "
        f"{interpreter}; {plan.summary})"
    )
    return project


def envs_dir(ctx: StepContext) -> Path:
    state = ctx.env.get("CONVEYOR_STATE_DIR")
    if not state:
        raise ConveyorError(
            f"{ctx.job_id}: the project's environment lives in the state folder, and "
            "CONVEYOR_STATE_DIR is not set",
            hint="the engine sets it for every job; outside a pipeline, set it to a folder",
        )
    return Path(state) / ENVS_DIR


def _lock(path: Path) -> TextIO:
    """Blocks until this process holds the lock (call it in a thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _unlock(handle: TextIO) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


async def _build(ctx: StepContext, root: Path, interpreter: str, plan: _Plan) -> None:
    shutil.rmtree(root, ignore_errors=True)  # a build interrupted half-way
    own_pip = importlib.util.find_spec("pip") is not None
    venv = [interpreter, "-m", "venv", *(["--without-pip"] if own_pip else []), str(root)]
    await _must(ctx, venv, "creating the virtualenv")
    args = list(plan.pip_args)
    if plan.specifiers:
        listed = root / "conveyor-requirements.txt"
        listed.write_text("\n".join(plan.specifiers) + "\n")
        args += ["-r", str(listed)]
    python = str(root / "bin" / "python")
    # Conveyor's pip installs into the new environment (--python), which then needs no
    # pip of its own: a bare venv is made in a fraction of ensurepip's time.
    pip = [sys.executable, "-m", "pip", "--python", python] if own_pip else [python, "-m", "pip"]
    quiet = ["install", "--disable-pip-version-check", "--no-input", "--quiet"]
    await _must(ctx, [*pip, *quiet, *args], "installing the project's dependencies")
    (root / COMPLETE).write_text(json.dumps({"python": interpreter, "from": plan.summary}))


async def _must(ctx: StepContext, argv: list[str], doing: str) -> None:
    ran = await ctx.run_tool(argv)
    if not ran.result.ok:
        raise ConveyorError(f"{ctx.job_id}: {ran.failure_detail(doing)}")
