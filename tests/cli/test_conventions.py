"""The CLI's conventions: exit codes by kind of failure, JSON errors, `-o json` on action
commands, CONVEYOR_FILE, completion, Examples in every group's help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import GitProject, MakeProject, run_cli
from conveyor.cli import app as cli_app
from conveyor.errors import InfrastructureError

SPEC = """\
version: 1
jobs:
  build:
    run: echo built
  test:
    needs: [build]
    run: echo tested
"""
BAD_SPEC = """\
version: 1
jobs:
  build:
    runn: make
  test:
    needs: [nothing]
    run: x
"""
GROUPS = ("env", "release", "flags", "keys", "image", "vulndb", "audit", "approvals", "users")


@pytest.fixture
def project(git_project: MakeProject) -> GitProject:
    return git_project(SPEC)


def error_of(stderr: str) -> dict[str, Any]:
    """The JSON error on standard error, which must be all there is on it."""
    parsed = json.loads(stderr)
    assert set(parsed) == {"error"}
    error: dict[str, Any] = parsed["error"]
    assert {"code", "message", "hint", "location"} <= set(error)
    return error


# --- exit codes, one per kind of failure --------------------------------------------------


def test_a_usage_error_exits_2_in_text_and_in_json(project: GitProject) -> None:
    text = run_cli(["run", "--no-such-option"], project.root)
    as_json = run_cli(["run", "--no-such-option", "-o", "json"], project.root)

    assert text.exit_code == 2
    assert "No such option: --no-such-option" in text.stderr
    assert as_json.exit_code == 2
    error = error_of(as_json.stderr)
    assert (error["code"], error["location"]) == ("usage", None)
    assert "--no-such-option" in error["message"]


def test_an_unknown_run_exits_4_not_found(project: GitProject) -> None:
    assert run_cli(["run", "-q"], project.root).exit_code == 0

    text = run_cli(["status", "7"], project.root)
    as_json = run_cli(["status", "7", "-o", "json"], project.root)

    assert text.exit_code == 4
    assert "error:" in text.stderr and "Traceback" not in text.stderr
    assert as_json.exit_code == 4
    assert as_json.stdout == ""
    assert error_of(as_json.stderr)["code"] == "not_found"


def test_a_database_that_cannot_be_opened_exits_3_infrastructure(
    project: GitProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_DATABASE_URL", "sqlite:////proc/no-such-dir/conveyor.db")

    text = run_cli(["history"], project.root)
    as_json = run_cli(["history", "-o", "json"], project.root)

    assert text.exit_code == 3
    assert "no-such-dir" in text.stderr and "Traceback" not in text.stderr
    assert as_json.exit_code == 3
    error = error_of(as_json.stderr)
    assert error["code"] == "infrastructure"
    assert "CONVEYOR_DATABASE_URL" in error["hint"]


def test_an_infrastructure_error_of_a_service_exits_3(
    project: GitProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_args: object, **_kwargs: object) -> None:
        raise InfrastructureError("the registry at localhost:5000 refused the connection")

    monkeypatch.setattr("conveyor.service.images.list_images", unreachable)

    result = run_cli(["image", "ls", "-o", "json"], project.root)

    assert result.exit_code == 3
    assert error_of(result.stderr)["message"] == (
        "the registry at localhost:5000 refused the connection"
    )


def test_ctrl_c_anywhere_exits_130_without_a_traceback(
    project: GitProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("conveyor.spec.loader.load_pipeline", interrupted)
    in_command = run_cli(["lint"], project.root)
    monkeypatch.setattr(cli_app, "build_app", interrupted)
    in_start_up = run_cli(["lint", "-o", "json"], project.root)

    assert in_command.exit_code == 130
    assert "interrupted" in in_command.stderr and "Traceback" not in in_command.stderr
    assert in_start_up.exit_code == 130
    assert error_of(in_start_up.stderr)["code"] == "interrupted"


def test_a_failed_pipeline_exits_1_with_its_result_as_json(git_project: MakeProject) -> None:
    project = git_project("version: 1\njobs:\n  broken: {run: exit 3}\n  after: {run: 'true'}\n")

    result = run_cli(["run", "-o", "json"], project.root)

    assert result.exit_code == 1
    assert result.json() == {
        "run": 1,
        "state": "failed",
        "jobs": {"broken": "failed", "after": "success"},
        "failed": ["broken"],
    }
    assert "broken" in result.stderr  # the progress went to standard error


# --- JSON errors for conveyor.yml -----------------------------------------------------------


def test_lint_lists_every_problem_as_json_with_its_location(tmp_path: Path) -> None:
    (tmp_path / "conveyor.yml").write_text(BAD_SPEC)
    spec = str(tmp_path / "conveyor.yml")

    result = run_cli(["lint", "-o", "json"], tmp_path)

    assert result.exit_code == 2
    error = error_of(result.stderr)
    assert error["code"] == "spec"
    assert error["location"] == {"file": spec, "line": 4, "col": 5}
    problems = [(p["key"], p["location"]) for p in error["problems"]]
    assert problems == [
        ("jobs.build.runn", {"file": spec, "line": 4, "col": 5}),
        ("jobs.test.needs[0]", {"file": spec, "line": 6, "col": 13}),
    ]
    assert "did you mean 'run'?" in error["problems"][0]["hint"]
    report = result.json()  # the lint report itself stays on standard output
    assert (report["valid"], len(report["problems"])) == (False, 2)


def test_any_command_reading_a_bad_spec_gives_the_json_error(git_project: MakeProject) -> None:
    project = git_project(BAD_SPEC)

    result = run_cli(["plan", "-o", "json"], project.root)

    assert result.exit_code == 2
    error = error_of(result.stderr)
    assert error["location"]["file"] == str(project.spec)
    assert len(error["problems"]) == 2


# --- -o json on action commands -------------------------------------------------------------


def test_init_and_keys_generate_as_json(tmp_path: Path) -> None:
    initialised = run_cli(["init", "app", "-o", "json"], tmp_path)
    generated = run_cli(["keys", "generate", "ci", "--dir", "keys", "-o", "json"], tmp_path)

    assert initialised.exit_code == 0, initialised.stderr
    written = initialised.json()
    assert written["file"] == str((tmp_path / "app" / "conveyor.yml").resolve())
    assert written["state_dir"] == str((tmp_path / "app" / ".conveyor").resolve())
    assert written["complete"] is False  # an empty folder: the minimal file
    assert written["not_detected"] and written["signing_key"] is None
    assert generated.exit_code == 0, generated.stderr
    key = generated.json()
    assert set(key) == {
        "key_id",
        "private_key",
        "public_key",
        "private_key_ignored_by_git",
        "public_key_ignored_by_git",
    }
    assert key["public_key_ignored_by_git"] is None  # no repository here
    assert Path(key["public_key"]) == tmp_path / "keys" / "ci.pub"
    assert Path(key["private_key"]).is_file()


def test_users_add_and_revoke_as_json(project: GitProject) -> None:
    added = run_cli(
        ["users", "add", "riley", "--email", "r@example.org", "--role", "reviewer", "-o", "json"],
        project.root,
    )
    issued = run_cli(["users", "token", "riley", "-o", "json"], project.root).json()
    revoked = run_cli(["users", "revoke", "riley", issued["id"], "-o", "json"], project.root)

    assert added.exit_code == 0, added.stderr
    user = added.json()["user"]
    assert (user["name"], user["email"], user["roles"], user["tokens"]) == (
        "riley",
        "r@example.org",
        ["reviewer"],
        [],
    )
    assert added.json()["file"].endswith("users.yml")
    assert revoked.exit_code == 0, revoked.stderr
    token = revoked.json()["token"]
    assert (revoked.json()["user"], token["id"]) == ("riley", issued["id"])
    assert token["revoked"] is not None


@pytest.mark.parametrize("command", ["promote", "abort", "pause", "resume"])
def test_release_commands_as_json(
    project: GitProject, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    sent: list[tuple[str, str]] = []

    def send(_project: object, _store: object, name: str, what: str, _actor: str) -> int:
        sent.append((name, what))
        return 12

    monkeypatch.setattr("conveyor.service.releases.send_command", send)

    result = run_cli(["release", command, "production", "-o", "json"], project.root)

    assert result.exit_code == 0, result.stderr
    assert result.json() == {"environment": "production", "command": command, "deploy_id": 12}
    assert sent == [("production", command)]


def test_env_stop_as_json_and_an_unknown_environment_as_a_json_error(
    git_project: MakeProject,
) -> None:
    project = git_project(SPEC + "environments:\n  staging: {}\n")

    stopped = run_cli(["env", "stop", "staging", "-o", "json"], project.root)
    unknown = run_cli(["env", "reconcile", "prod", "-o", "json"], project.root)

    assert stopped.exit_code == 0, stopped.stderr
    assert stopped.json() == {"environment": "staging", "stopped": []}
    assert unknown.exit_code == 4
    assert "no environment 'prod'" in error_of(unknown.stderr)["message"]


# --- quiet, verbose ---------------------------------------------------------------------------


def test_quiet_and_verbose_together_are_a_usage_error(project: GitProject) -> None:
    result = run_cli(["run", "-q", "-v"], project.root)

    assert result.exit_code == 2
    assert "--quiet and --verbose" in result.stderr


def test_run_prints_plain_lines_when_not_on_a_terminal(project: GitProject) -> None:
    normal = run_cli(["run"], project.root)
    quiet = run_cli(["run", "-q"], project.root)

    assert normal.exit_code == 0, normal.stderr
    assert re.search(r"build +\| built", normal.stdout)  # every log line, prefixed
    assert "\x1b[" not in normal.stdout  # no live display, no cursor movement
    assert "built" not in quiet.stdout
    assert re.search(r"2/2 .*test", quiet.stdout)


# --- environment variables, help, completion -----------------------------------------------


def test_conveyor_file_names_the_spec(project: GitProject, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVEYOR_FILE", str(project.spec))
        result = run_cli(["lint", "-o", "json"], elsewhere)

    assert result.exit_code == 0, result.stderr
    assert result.json()["file"] == str(project.spec)


def test_help_shows_the_environment_variables(tmp_path: Path) -> None:
    root = run_cli(["--help"], tmp_path)
    lint = run_cli(["lint", "--help"], tmp_path)
    users = run_cli(["users", "--help"], tmp_path)

    for variable in (
        "CONVEYOR_FILE",
        "CONVEYOR_STATE_DIR",
        "CONVEYOR_DATABASE_URL",
        "CONVEYOR_ACTOR",
        "CONVEYOR_USERS_FILE",
        "CONVEYOR_TOKEN",
        "CONVEYOR_SECRET_<ENV>_<NAME>",
    ):
        assert variable in root.stdout
    assert "env var: CONVEYOR_FILE" in lint.stdout
    assert "CONVEYOR_USERS_FILE" in users.stdout


@pytest.mark.parametrize("group", GROUPS)
def test_every_command_group_has_examples(tmp_path: Path, group: str) -> None:
    result = run_cli([group, "--help"], tmp_path)

    assert result.exit_code == 0
    assert "Examples" in result.stdout
    assert f"conveyor {group} " in result.stdout


def test_root_help_has_examples_and_the_exit_codes(tmp_path: Path) -> None:
    result = run_cli(["--help"], tmp_path)

    assert "Examples" in result.stdout
    assert "4 not found" in result.stdout
    epilog = result.stdout.split("Examples")[1].splitlines()
    assert max(len(line.rstrip()) for line in epilog) <= 80  # fits a narrow terminal


def test_show_completion_prints_a_bash_script(tmp_path: Path) -> None:
    result = run_cli(["--show-completion", "bash"], tmp_path)

    assert result.exit_code == 0
    assert "_CONVEYOR_COMPLETE=complete_bash" in result.stdout
    assert "complete -o default -F _conveyor_completion conveyor" in result.stdout


def test_completion_completes_commands_and_subcommands(tmp_path: Path) -> None:
    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "_CONVEYOR_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        done = subprocess.run(
            [sys.executable, "-m", "conveyor"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.split()

    assert "env" in complete("conveyor en")
    assert {"promote", "pause"} <= set(complete("conveyor release p"))


# --- start-up: lazy command modules, no click -------------------------------------------------


def loaded_after(args: list[str]) -> set[str]:
    """The modules of conveyor.cli, typer and rich that `conveyor ARGS` imported."""
    code = (
        "import sys, contextlib, io\n"
        "from conveyor.cli.app import run_cli\n"
        "out, err = io.StringIO(), io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        f"    run_cli({args!r})\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {m for m in done.stdout.split() if m.split(".")[0] in ("conveyor", "typer", "rich")}


def test_version_imports_neither_typer_nor_rich_nor_a_command_module() -> None:
    loaded = loaded_after(["--version"])

    assert not {m for m in loaded if not m.startswith("conveyor.")} - {"conveyor"}
    assert not {m for m in loaded if m.startswith("conveyor.cli.")} - {
        "conveyor.cli.app",
        "conveyor.cli.failures",
    }


def test_a_command_imports_only_its_own_command_module(tmp_path: Path) -> None:
    loaded = loaded_after(["schema"])

    commands = {m.removeprefix("conveyor.cli.") for m in loaded if m.startswith("conveyor.cli.")}
    assert commands == {"app", "failures", "output", "project"}


def test_the_command_table_names_what_each_module_registers() -> None:
    import typer

    for module in set(cli_app.COMMAND_MODULES.values()):
        names = [name for name, owner in cli_app.COMMAND_MODULES.items() if owner == module]
        app = cli_app.build_app(names)
        group = typer.main.get_group(app)
        assert sorted(group.commands) == sorted(names), module


def test_the_cli_does_not_import_click() -> None:
    sources = Path(cli_app.__file__).parent.glob("*.py")
    offenders = [
        path.name
        for path in sources
        if re.search(r"^\s*(import click|from click|.*typer\._click)", path.read_text(), re.M)
    ]

    assert offenders == []


# --- progress ---------------------------------------------------------------------------------


def test_progress_is_silent_quiet_and_plain_lines_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from conveyor.cli.output import Verbosity, progress

    with progress(Verbosity.QUIET, "deploying") as say:
        say("traffic: a 80%, b 20% (canary step 1)")
    quiet = capsys.readouterr()
    with progress(Verbosity.NORMAL, "deploying") as say:
        say("traffic: a 80%, b 20% (canary step 1)")
        say("judge: promote: p99 within 10% of stable")
    normal = capsys.readouterr()

    assert (quiet.out, quiet.err) == ("", "")
    assert normal.out == ""  # progress never mixes with the result (or its JSON)
    assert normal.err.splitlines() == [
        "· traffic: a 80%, b 20% (canary step 1)",
        "· judge: promote: p99 within 10% of stable",
    ]


def test_live_progress_on_a_terminal_keeps_the_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from conveyor.cli import output

    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100, highlight=False)
    monkeypatch.setattr(output, "err_console", terminal)

    with output.progress(output.Verbosity.NORMAL, "deploying to production") as say:
        say("traffic: stable 80%, canary 20% (canary step 1)")
        say("waiting 5 s")
        say("judge: rollback: 5xx 4.0% > 1.0%")

    shown = screen.getvalue()
    assert "judge: rollback: 5xx 4.0% > 1.0%" in shown  # printed, not only in the live line
    assert "\x1b[" in shown  # drawn in place on a terminal


def test_help_paragraphs_are_reflowed_but_lists_are_kept() -> None:
    text = """First line.

    A paragraph wrapped
    over three
    lines.

    - a list item
    - another"""
    assert cli_app.reflowed(text) == (
        "First line.\n\nA paragraph wrapped over three lines.\n\n- a list item\n- another"
    )


def test_a_commands_help_reads_as_paragraphs(tmp_path: Path) -> None:
    shown = run_cli(["run", "--help"], tmp_path)
    assert shown.exit_code == 0
    assert "in a pipe or a log file each state change" in shown.stdout
