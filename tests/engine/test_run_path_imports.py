"""`conveyor run` of a pipeline of `run:` jobs loads only the run path.

Every module loaded on the way is start-up time of every run (docs/benchmarks.md,
section 1). A capability that creeps onto the run path (a step, the deploy service, an
HTTP client, the supply chain) fails this test; the fix is a lazy import where the
capability is used, or, if the run path really needs it, a line in the allow-list.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import GIT_ENV, MakeProject

# Third-party packages the run path needs: the CLI (typer, click, rich), the spec
# (pydantic, PyYAML, wcmatch) and the store (SQLAlchemy Core).
THIRD_PARTY = frozenset(
    {
        "annotated_doc",
        "annotated_types",
        "bracex",
        "click",
        "pydantic",
        "pydantic_core",
        "rich",
        "shellingham",
        "sqlalchemy",
        "typer",
        "typing_extensions",
        "typing_inspection",
        "wcmatch",
        "yaml",
        "_yaml",
    }
)
# Support modules of the interpreter and of compiled extensions (SQLAlchemy's, PyYAML's).
RUNTIME_PREFIXES = ("_cython_", "cython_runtime", "_sysconfigdata_")
# Conveyor packages the run path may load whole.
CONVEYOR_PACKAGES = ("cli", "engine", "spec", "store", "vcs")
# Conveyor modules it may load from the other packages, one by one.
CONVEYOR_MODULES = frozenset(
    {
        "conveyor",
        "conveyor.__main__",
        "conveyor.backends",  # the backend name tables the spec validates against
        "conveyor.errors",
        "conveyor.safe_yaml",
        "conveyor.states",
        "conveyor.findings",
        "conveyor.findings.fingerprint",
        "conveyor.findings.model",
        "conveyor.findings.sarif",
        "conveyor.service",
        "conveyor.service.project",
        "conveyor.service.recovery",
        "conveyor.service.runs",
        "conveyor.service.step_environments",
        "conveyor.steps",
        "conveyor.steps.registry",
    }
)

# Runs the CLI as `python -m conveyor` would and writes the modules it loaded (those
# not already loaded by the interpreter's start-up) to the file named by argv[1].
_PROBE = """
import atexit, runpy, sys
before = set(sys.modules)
out, sys.argv = sys.argv[1], ["conveyor", *sys.argv[2:]]
def dump():
    with open(out, "w") as f:
        f.write("\\n".join(sorted(set(sys.modules) - before)))
atexit.register(dump)
runpy.run_module("conveyor", run_name="__main__", alter_sys=True)
"""

RUN_ONLY = """\
version: 1
jobs:
  build: {run: echo built > out.txt, outputs: [out.txt]}
  test: {run: cat out.txt, needs: [build]}
"""


def _allowed(module: str) -> bool:
    top = module.partition(".")[0]
    if top in sys.stdlib_module_names or top in THIRD_PARTY:
        return True
    if module.startswith(RUNTIME_PREFIXES):
        return True
    if module in CONVEYOR_MODULES:
        return True
    return any(module.startswith(f"conveyor.{package}") for package in CONVEYOR_PACKAGES)


def _modules_loaded_by_run(root: Path, tmp_path: Path) -> list[str]:
    listing = tmp_path / "modules.txt"
    env = {**os.environ, **GIT_ENV, "CONVEYOR_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(listing), "run", "-q"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return listing.read_text().split()


def test_a_run_of_run_jobs_loads_only_the_run_path(
    git_project: MakeProject, tmp_path: Path
) -> None:
    project = git_project(RUN_ONLY)

    loaded = _modules_loaded_by_run(project.root, tmp_path)

    assert {"conveyor.service.runs", "conveyor.engine.runner", "sqlalchemy"} <= set(loaded)
    assert [module for module in loaded if not _allowed(module)] == []


def test_the_allow_list_refuses_what_a_run_of_run_jobs_does_not_need() -> None:
    creeping = [
        "conveyor.steps.sast",
        "conveyor.service.environments",
        "conveyor.deploy.controller",
        "conveyor.supply.oci.build",
        "conveyor.verify.target",
        "httpx",
        "cryptography",
    ]
    assert [module for module in creeping if _allowed(module)] == []
