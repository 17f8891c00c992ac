"""The project's own virtualenv for the `test` step: what goes in, where it is kept, and
that nothing of Conveyor's environment or PATH leaks into it."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.steps import testing
from conveyor.steps.project_env import (
    COMPLETE,
    ProjectEnv,
    VenvParams,
    ensure_project_env,
    plan_env,
)
from fixture_apps import FLASK_NOTES, copy_app
from steps.conftest import context, tools_env
from steps.test_build_image import tiny_wheel

PYTHON = "/usr/bin/python3"


def _plan(workspace: Path, **params: object) -> str:
    venv = VenvParams.model_validate(params)
    return plan_env(venv, workspace, PYTHON, ["pytest"]).digest


def test_the_digest_follows_the_dependency_files(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")
    (tmp_path / "base.txt").write_text("flask==3.0.0\n")
    first = _plan(tmp_path, dependencies=["requirements.txt"])

    same = _plan(tmp_path, dependencies=["requirements.txt"])
    (tmp_path / "base.txt").write_text("flask==3.0.1\n")  # an included file changed
    changed = _plan(tmp_path, dependencies=["requirements.txt"])
    more = _plan(tmp_path, dependencies=["requirements.txt"], packages=["httpx"])

    assert first == same
    assert len({first, changed, more}) == 3


def test_pyproject_dependencies_and_extras(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "n"\ndependencies = ["flask>=3"]\n'
        '[project.optional-dependencies]\ntest = ["pytest>=8"]\n'
    )
    venv = VenvParams(dependencies=["pyproject.toml"], extras=["test"])

    plan = plan_env(venv, tmp_path, PYTHON, ["pytest", "pytest-cov"])

    # pytest is named by the extra: only pytest-cov is added
    assert plan.specifiers == ["flask>=3", "pytest>=8", "pytest-cov"]
    assert plan.summary == "pyproject.toml, +pytest-cov (extras: test)"


@pytest.mark.parametrize(
    ("pyproject", "extras", "message"),
    [
        ('[project]\nname = "n"\n', ["test"], "no optional-dependencies group 'test'"),
        ("[tool.x]\n", [], r"has no \[project\] table"),
        ("[project\n", [], "not valid TOML"),
    ],
)
def test_a_pyproject_it_cannot_use_is_named(
    tmp_path: Path, pyproject: str, extras: list[str], message: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)

    with pytest.raises(ConveyorError, match=message):
        _plan(tmp_path, dependencies=["pyproject.toml"], extras=extras)


def test_the_job_environment_leaves_out_what_would_leak(tmp_path: Path) -> None:
    env = ProjectEnv(tmp_path / "venv", PYTHON, reused=True)
    base = {"PATH": "/usr/bin", "PYTHONPATH": "/conveyor/src", "PYTHONHOME": "/x", "HOME": "/h"}

    scoped = env.env(base)

    assert scoped["PATH"] == f"{tmp_path / 'venv' / 'bin'}:/usr/bin"
    assert "PYTHONPATH" not in scoped and "PYTHONHOME" not in scoped
    assert scoped["VIRTUAL_ENV"] == str(tmp_path / "venv")
    assert scoped["PYTHONNOUSERSITE"] == "1" and scoped["HOME"] == "/h"
    assert env.command(["python", "-m", "pytest"])[0] == str(tmp_path / "venv" / "bin" / "python")
    assert env.command(["make", "test"]) == ["make", "test"]
    with_src = ProjectEnv(tmp_path / "venv", PYTHON, reused=True, pythonpath=(tmp_path / "src",))
    assert with_src.env(base)["PYTHONPATH"] == str(tmp_path / "src")  # the checkout's only


def test_an_environment_is_built_once_and_holds_only_what_was_asked(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    (workspace / "requirements.txt").write_text(f"./{tiny_wheel(workspace)}\n")
    state = tmp_path / "state"
    env = {**tools_env(), "CONVEYOR_STATE_DIR": str(state), "PIP_NO_INDEX": "1"}
    venv = VenvParams(dependencies=["requirements.txt"])
    ctx, log = context(workspace, env=env)

    built = asyncio.run(ensure_project_env(venv, ctx, []))
    again = asyncio.run(ensure_project_env(venv, ctx, []))

    assert built.root == again.root and built.root.parent == state / "envs" / "python"
    assert (built.root / COMPLETE).is_file()
    assert not built.reused and again.reused
    assert "runs in the project's environment" in log.text and "(reused;" in log.text
    probe = "import tiny, importlib.util as u; print(tiny.VALUE, u.find_spec('pydantic'))"
    shown = subprocess.run(
        [str(built.python), "-c", probe],
        env=built.env(env),
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.split() == ["1", "None"]  # its package, and none of Conveyor's


def test_a_failed_install_fails_the_job_and_is_built_again_next_time(tmp_path: Path) -> None:
    workspace = tmp_path / "work"
    workspace.mkdir()
    (workspace / "requirements.txt").write_text("no-such-package-anywhere==1.0\n")
    env = {**tools_env(), "CONVEYOR_STATE_DIR": str(tmp_path / "state"), "PIP_NO_INDEX": "1"}
    ctx, _ = context(workspace, env=env)
    venv = VenvParams(dependencies=["requirements.txt"])

    with pytest.raises(ConveyorError, match="installing the project's dependencies"):
        asyncio.run(ensure_project_env(venv, ctx, []))

    (folder,) = [p for p in (tmp_path / "state" / "envs" / "python").iterdir() if p.is_dir()]
    assert not (folder / COMPLETE).exists()


@pytest.mark.timeout(300)
def test_the_flask_fixture_tests_run_in_its_own_environment(tmp_path: Path) -> None:
    """From PyPI: flask and pytest from pyproject.toml's [test] extra, and pytest-cov."""
    app = copy_app(FLASK_NOTES, tmp_path)
    env = {**tools_env(), "CONVEYOR_STATE_DIR": str(tmp_path / "state")}
    ctx, log = context(app, env=env)
    params = testing.TestParams.model_validate(
        {
            "command": ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            "source": ["notes"],
            "venv": {"dependencies": ["pyproject.toml"], "extras": ["test"]},
        }
    )

    async def both() -> tuple[bool, bool]:
        ran = await testing.TestStep().run(params, ctx)
        return ran.ok, (await testing.TestStep().finalize(params, ctx, ran)).ok

    assert asyncio.run(both()) == (True, True), log.text
    assert "runs in the project's environment" in log.text
    report = json.loads((app / testing.raw_dir("scan") / "tests.json").read_text())
    assert [case["outcome"] for case in report["cases"]] == ["passed"] * 4
    assert (app / testing.raw_dir("scan") / "coverage.json").is_file()
