"""`conveyor flags ...` in-process, and `conveyor flags serve` as a real subprocess."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import WAIT_SECONDS, CliResult, run_cli, wait_until
from conveyor.service.project import Project
from deploy.apps import free_port, make_project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")


def cli(project: Project, *args: str) -> CliResult:
    return run_cli(["flags", *args], project.directory)


def test_set_rollout_kill_and_ls(project: Project) -> None:
    created = cli(project, "set", "production", "banner", "--on")
    rolled = cli(project, "rollout", "production", "banner", "25", "--stickiness", "tenant")
    killed = cli(project, "kill", "production", "banner", "--reason", "errors up")
    again = cli(project, "kill", "production", "banner")
    listed = cli(project, "ls", "production", "-o", "json")

    assert created.exit_code == 0, created.stderr
    assert "production/banner: on · everyone · version 1" in created.stdout
    assert "rollout 25% on tenant · version 2" in rolled.stdout
    assert "production/banner: killed (version 3)" in killed.stdout
    assert "already off, nothing to kill" in again.stdout
    flags = listed.json()["flags"]
    assert listed.json()["version"] == 3
    assert (flags[0]["flag"]["name"], flags[0]["flag"]["enabled"]) == ("banner", False)
    assert flags[0]["flag"]["strategies"][0]["percentage"] == 25


def test_ls_shows_a_table(project: Project) -> None:
    cli(project, "rollout", "staging", "search-v2", "10")

    shown = cli(project, "ls", "staging")
    empty = cli(project, "ls", "production")

    assert "search-v2" in shown.stdout and "rollout 10% on default" in shown.stdout
    assert "no flags in production yet" in empty.stdout


def test_set_from_a_definition_file_and_eval(project: Project, tmp_path: Path) -> None:
    definition = tmp_path / "banner.yml"
    definition.write_text(
        textwrap.dedent(
            """\
            description: the new banner
            enabled: true
            strategies:
              - type: rollout
                percentage: 100
                segments: [beta]
            variants:
              - {name: yellow, weight: 1, payload: {type: string, value: "#ff0"}}
            """
        )
    )
    segment = tmp_path / "beta.yml"
    segment.write_text("constraints:\n  - {context_name: plan, operator: IN, values: [beta]}\n")

    refused = cli(project, "set", "staging", "banner", "-d", str(definition))
    defined_segment = cli(project, "segment", "staging", "beta", "-d", str(segment))
    defined = cli(project, "set", "staging", "banner", "-d", str(definition))
    beta = cli(project, "eval", "staging", "banner", "-c", "plan=beta", "-c", "userId=7")
    free = cli(project, "eval", "staging", "banner", "-c", "plan=free", "-o", "json")

    assert refused.exit_code == 2
    assert "segments staging does not have: beta" in refused.stderr
    assert defined_segment.exit_code == 0 and defined.exit_code == 0, defined.stderr
    assert "on variant yellow (SPLIT): strategy 1: rollout 100%" in beta.stdout
    assert free.json() == {
        "value": False,
        "variant": None,
        "payload": None,
        "reason": "DEFAULT",
        "detail": "no strategy matched this context",
        "version": 2,
    }


def test_history_reads_the_event_log(project: Project) -> None:
    cli(project, "set", "staging", "banner", "--on")
    cli(project, "rollout", "staging", "banner", "30")
    cli(project, "kill", "staging", "banner")

    text = cli(project, "history", "staging", "banner")
    events = cli(project, "history", "staging", "-o", "json").json()

    assert [event["kind"] for event in events] == ["flag.changed", "flag.changed", "flag.killed"]
    assert "v2  banner: rollout 30%" in text.stdout
    assert "v3  banner: killed" in text.stdout


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["ls", "prod"], "no environment 'prod' in conveyor.yml", 4),
        (["set", "staging", "banner"], "say --on, --off or --definition FILE", 2),
        (["rollout", "staging", "banner", "120"], "a rollout percentage is 0..100", 2),
        (["kill", "staging", "ghost"], "no flag 'ghost' in staging", 4),
        (["eval", "staging", "ghost"], "no flag 'ghost' in staging", 4),
        (["eval", "staging", "ghost", "-c", "userId"], "--context takes key=value", 2),
        (["set", "staging", "bad name!", "--on"], "bad name!", 2),
    ],
)
def test_user_errors_are_one_line_and_exit_2_or_4_when_not_found(
    project: Project, args: list[str], message: str, code: int
) -> None:
    result = cli(project, *args)

    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: other\nenabled: true\n", "defines 'other', not 'banner'"),
        ("- just a list\n", "must hold a mapping"),
        ("enabled: [\n", "is not valid YAML"),
        (
            "strategies:\n  - {type: rollout, percentage: 150}\n",
            "strategies.0.rollout.percentage",
        ),
        (
            "strategies:\n  - type: default\n    constraints:\n"
            "      - {context_name: v, operator: SEMVER_GT, value: '1.2'}\n",
            "SEMVER_GT cannot use '1.2'",
        ),
    ],
)
def test_a_bad_definition_file_is_explained(
    project: Project, tmp_path: Path, content: str, message: str
) -> None:
    definition = tmp_path / "flag.yml"
    definition.write_text(content)

    result = cli(project, "set", "staging", "banner", "--definition", str(definition))

    assert result.exit_code == 2
    assert message in result.stderr


def test_a_missing_definition_file_is_explained(project: Project, tmp_path: Path) -> None:
    result = cli(project, "set", "staging", "banner", "-d", str(tmp_path / "nope.yml"))

    assert result.exit_code == 2
    assert "cannot read" in result.stderr


@pytest.fixture
def serve(project: Project) -> Iterator[Callable[[int], subprocess.Popen[str]]]:
    """Start `conveyor flags serve --port N` in the project; stopped at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int) -> subprocess.Popen[str]:
        args = [sys.executable, "-m", "conveyor", "flags", "serve", "--port", str(port)]
        popen = subprocess.Popen(
            args,
            cwd=project.directory,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(popen)
        return popen

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.communicate(timeout=WAIT_SECONDS)


def test_serve_answers_until_interrupted(
    project: Project, serve: Callable[[int], subprocess.Popen[str]]
) -> None:
    cli(project, "set", "production", "banner", "--on")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    server = serve(port)
    wait_until(lambda: _healthy(url, server), "conveyor flags serve to answer")
    answer = httpx.get(f"{url}/flags/production/banner", params={"userId": "ada"}).json()
    cli(project, "kill", "production", "banner")
    after = httpx.get(f"{url}/flags/production/banner").json()
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=WAIT_SECONDS)

    assert server.returncode == 0, err
    assert (answer["value"], answer["reason"]) == (True, "STATIC")
    assert (after["value"], after["reason"]) == (False, "DISABLED")
    assert f"serving flags at {url}" in err


def _healthy(url: str, server: subprocess.Popen[str]) -> bool:
    if server.poll() is not None:
        pytest.fail(f"conveyor flags serve exited: {server.communicate()[1]}")
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_the_documented_definitions_are_accepted(project: Project, tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "flags.md"
    blocks = docs.read_text().split("```yaml\n")[1:]
    flag_yaml, segment_yaml = (block.split("```")[0] for block in blocks[:2])
    (tmp_path / "flag.yml").write_text(flag_yaml)
    (tmp_path / "segment.yml").write_text(segment_yaml)

    segment = cli(
        project, "segment", "production", "beta-testers", "-d", str(tmp_path / "segment.yml")
    )
    flag = cli(project, "set", "production", "search-v2", "-d", str(tmp_path / "flag.yml"))
    fr = cli(
        project,
        "eval",
        "production",
        "search-v2",
        "-c",
        "country=fr",
        "-c",
        "appVersion=2.4.0",
        "-c",
        "userId=ada",
        "-o",
        "json",
    )

    assert segment.exit_code == 0, segment.stderr
    assert flag.exit_code == 0, flag.stderr
    assert (fr.json()["value"], fr.json()["reason"]) == (True, "TARGETING_MATCH")


def test_a_judged_release_needs_the_environments_flags_settings(project: Project) -> None:
    cli(project, "rollout", "staging", "search-v2", "10")

    result = cli(project, "release", "staging", "search-v2")

    assert result.exit_code != 0
    assert "has no `flags:` settings" in result.stderr
    assert "Traceback" not in result.stderr
