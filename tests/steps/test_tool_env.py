"""Where the scanner steps take their tools from: Conveyor's tool environment unless the
job says `tools_from: path`, and never the other one by accident."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.engine.tool_output import ScanFailed
from conveyor.steps.tool_env import ToolEnvironment, ToolSource, locate_tool
from steps.conftest import context, tools_env


def _program(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_a_tool_in_the_environments_bin_folder_is_found_there(tmp_path: Path) -> None:
    ruff = _program(tmp_path / "venv" / "bin" / "ruff")
    ctx, _ = context(tmp_path, env=tools_env(str(tmp_path / "empty")))

    found = locate_tool(ctx, "ruff", ToolSource.CONVEYOR, ToolEnvironment((ruff.parent,)))

    assert found.argv == [str(ruff)]
    assert found.provenance("0.6.9") == (f"ruff 0.6.9 from Conveyor's tool environment ({ruff})")


def test_a_tool_with_a_virtualenv_of_its_own_is_found_under_tools(tmp_path: Path) -> None:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    semgrep = _program(tmp_path / "venv" / "tools" / "semgrep" / "bin" / "semgrep")
    ctx, _ = context(tmp_path)

    found = locate_tool(ctx, "semgrep", ToolSource.CONVEYOR, ToolEnvironment((bin_dir,)))

    assert found.argv == [str(semgrep)]


def test_a_tool_missing_from_the_environment_is_not_taken_from_path(tmp_path: Path) -> None:
    on_path = _program(tmp_path / "path" / "ruff")
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    ctx, _ = context(tmp_path, env=tools_env(str(on_path.parent)))

    with pytest.raises(ScanFailed) as raised:
        locate_tool(ctx, "ruff", ToolSource.CONVEYOR, ToolEnvironment((bin_dir,)))

    detail = raised.value.result.detail
    assert f"ruff is not installed in Conveyor's tool environment ({bin_dir})" in detail
    assert "`tools_from: path`" in detail


def test_the_running_interpreters_environment_has_the_scanners(tmp_path: Path) -> None:
    ctx, _ = context(tmp_path, env=tools_env(str(tmp_path)))

    for tool in ("ruff", "bandit", "detect-secrets", "semgrep"):
        found = locate_tool(ctx, tool, ToolSource.CONVEYOR)
        assert not found.argv[0].startswith(str(tmp_path)), tool


def test_the_jobs_path_is_used_when_the_job_says_so(tmp_path: Path) -> None:
    on_path = _program(tmp_path / "path" / "detect-secrets")
    ctx, _ = context(tmp_path, env=tools_env(str(on_path.parent)))

    found = locate_tool(ctx, "detect-secrets", ToolSource.PATH)

    assert found.argv == [str(on_path)]
    assert "from the job's PATH" in found.provenance("1.5.0")
