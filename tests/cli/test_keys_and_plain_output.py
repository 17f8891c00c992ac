"""`conveyor keys generate` says where its keys stand with git, truthfully; and output
off a terminal is not wrapped at 80 columns (issue 14's papercuts). The CLI runs as a
subprocess here, its standard output a pipe and without the COLUMNS the other CLI tests set."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GIT_ENV
from conveyor.cli import output


def conveyor(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=cwd,
        env={**clean, **GIT_ENV, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=root,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def repository(tmp_path: Path) -> Path:
    root = tmp_path / "service"
    root.mkdir()
    git(root, "init", "-q")
    return root


def test_the_advice_for_a_key_in_the_state_folder_is_a_command_that_works(
    tmp_path: Path,
) -> None:
    root = repository(tmp_path)

    generated = conveyor(["keys", "generate"], root)

    assert generated.returncode == 0, generated.stderr
    [private] = [line for line in generated.stdout.splitlines() if "private:" in line]
    [public] = [line for line in generated.stdout.splitlines() if "public:" in line]
    assert "git-ignored; keep it secret" in private
    assert "git ignores .conveyor/keys/" in public
    [command] = re.findall(r"`([^`]+)`", public)  # one line: not wrapped off a terminal
    subprocess.run(["bash", "-c", command], cwd=root, env={**os.environ, **GIT_ENV}, check=True)
    assert git(root, "status", "--porcelain", "--untracked-files=all").splitlines() == [
        "A  keys/conveyor.pub"  # the private key stays ignored, before any `conveyor run`
    ]
    assert "list keys/conveyor.pub in images.admission.trusted_keys" in public


def test_a_key_outside_the_state_folder_is_committed_where_it_is(tmp_path: Path) -> None:
    root = repository(tmp_path)

    generated = conveyor(["keys", "generate", "release", "--dir", "keys"], root)

    assert generated.returncode == 0, generated.stderr
    assert "git does not ignore it: add it to .gitignore" in generated.stdout
    assert "commit it: `git add keys/release.pub`" in generated.stdout


def test_columns_still_decides_the_width_when_set(tmp_path: Path) -> None:
    root = repository(tmp_path)

    generated = conveyor(["keys", "generate"], root, COLUMNS="60")

    assert generated.returncode == 0, generated.stderr
    lines = generated.stdout.splitlines()
    assert max(len(line) for line in lines) <= 60
    assert not any("images.admission.trusted_keys)" in line and "cp " in line for line in lines)


def test_a_table_off_a_terminal_keeps_long_cells_on_one_line(tmp_path: Path) -> None:
    root = repository(tmp_path)
    long_name = "a-job-with-a-name-long-enough-to-push-a-table-past-eighty-columns-on-its-own"
    (root / "conveyor.yml").write_text(
        f"version: 1\njobs:\n  {long_name}:\n    run: echo 'a line that is long too'\n"
    )
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    assert conveyor(["run", "-q"], root).returncode == 0

    status = conveyor(["status"], root)

    assert status.returncode == 0, status.stderr
    [row] = [line for line in status.stdout.splitlines() if long_name in line]
    assert "success" in row and len(row) > 80


def test_off_a_terminal_a_long_line_stays_whole_and_a_rule_stays_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    written = io.StringIO()
    console = type(output.console)(file=written, highlight=False)
    line = " ".join(f"word{i}" for i in range(100))

    console.rule("where to look next", align="left")
    console.print(line)

    rule, printed = written.getvalue().splitlines()
    assert len(rule) == output.RULE_WIDTH and rule.startswith("where to look next ─")
    assert printed == line
