"""A one-command `run:` job is exec'd without bash only when bash would just exec it.

The shortcut saves a bash start-up per job (docs/benchmarks.md, section 1); the tests
check both that it is taken and that every command bash would treat differently is not.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import MakeProject
from conveyor.engine.shell import direct_argv
from conveyor.states import FailureClass, JobState, RunState

PATH = os.environ["PATH"]
SLEEP = shutil.which("sleep", path=PATH)


def test_a_plain_command_runs_the_program_found_on_the_jobs_path() -> None:
    assert direct_argv("sleep 0.05", PATH) == [SLEEP, "0.05"]
    assert direct_argv("  sleep   1  ", PATH) == [SLEEP, "1"]
    assert direct_argv("sleep --help=x", PATH) == [SLEEP, "--help=x"]


@pytest.mark.parametrize(
    "command",
    [
        "sleep 0 && sleep 1",  # control operators
        "sleep 0; sleep 1",
        "sleep 0 | cat",
        "sleep 0 > out.txt",  # redirection
        "sleep $DELAY",  # expansion
        "sleep `echo 0`",
        "sleep '0'",  # quoting
        'sleep "0"',
        r"sleep \0",
        "ls *.py",  # globbing
        "ls ~",  # tilde
        "ls {a,b}",  # braces
        "sleep 0 # comment",
        "sleep 0\nsleep 1",  # two lines
        "DELAY=0 sleep 0",  # an assignment
        "echo hi",  # builtins and keywords, even where a program of that name exists
        "true",
        "test -f x",
        "time sleep 0",
        "./build.sh",  # a path is the job's folder's, not ours
        "no-such-program-here",  # bash says `command not found`, exit 127
        "",
    ],
)
def test_what_bash_would_treat_itself_still_goes_to_bash(command: str) -> None:
    assert direct_argv(command, PATH) is None


def test_no_path_or_a_relative_folder_on_it_goes_to_bash() -> None:
    assert direct_argv("sleep 0", None) is None
    assert direct_argv("sleep 0", "") is None
    assert direct_argv("sleep 0", f"node_modules/.bin:{PATH}") is None


def test_a_script_without_a_shebang_goes_to_bash(tmp_path: Path) -> None:
    """The kernel cannot exec it; bash reads it as a shell script."""
    bare, with_shebang = tmp_path / "bare-tool", tmp_path / "shebang-tool"
    bare.write_text("echo bare\n")
    with_shebang.write_text("#!/bin/sh\necho shebang\n")
    for script in (bare, with_shebang):
        script.chmod(0o755)

    assert direct_argv("bare-tool", str(tmp_path)) is None
    assert direct_argv("shebang-tool x", str(tmp_path)) == [str(with_shebang), "x"]


def test_jobs_run_either_way_give_the_same_logs_exit_codes_and_failures(
    git_project: MakeProject,
) -> None:
    project = git_project(
        """\
        version: 1
        jobs:
          direct:
            run: ls -d missing-file
          through-bash:
            run: ls -d 'missing-file'
          lists:
            run: ls -1 src
          absent:
            run: no-such-program-here
        """,
        {"src/a.txt": "a", "src/b.txt": "b"},
    )

    outcome = project.run()

    assert outcome.state is RunState.FAILED
    jobs = project.jobs(outcome.run_id)
    assert jobs["direct"].exit_code == jobs["through-bash"].exit_code == 2
    assert jobs["direct"].failure is jobs["through-bash"].failure is FailureClass.EXIT_CODE
    assert jobs["lists"].state is JobState.SUCCESS
    assert (jobs["absent"].exit_code, jobs["absent"].failure) == (127, FailureClass.EXIT_CODE)
    logs = {job: project.log(outcome.run_id, job) for job in ("lists", "absent")}
    lines = [line.split("\t", 2)[1:] for line in logs["lists"].splitlines()]  # time, stream, text
    assert lines[:3] == [["stdout", "$ ls -1 src"], ["stdout", "a.txt"], ["stdout", "b.txt"]]
    assert "no-such-program-here: command not found" in logs["absent"]
