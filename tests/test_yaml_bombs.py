"""Alias bombs ("billion laughs") in every YAML file Conveyor reads are refused at once.

A 560-byte OSV advisory whose `summary` nests nine aliases nine deep took 5 s and 1.2 GB
in `vulndb import`: each reader here gets the same few hundred bytes and must refuse
them in well under a second, with a short message that names the problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from conveyor import safe_yaml
from conveyor.approvals.users import load_users
from conveyor.errors import ConveyorError
from conveyor.findings.exceptions import EXCEPTIONS_FILE, load_exceptions
from deploy.apps import make_project

FAST_SECONDS = 1.0  # unbounded, the smallest of these took 5 s and 1.2 GB
SHORT_MESSAGE = 600
REFUSED = "refused as an alias bomb"


def laughs(indent: str = "") -> str:
    """Nine aliases nine deep: 9**9 (387 million) strings once expanded."""
    lines = [f'{indent}l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        alias = f"*l{level - 1}"
        lines.append(f"{indent}l{level}: &l{level} [{','.join([alias] * 9)}]")
    return "\n".join(lines) + "\n"


BOMB_ADVISORY = "id: BOMB-1\nmodified: 2024-01-01T00:00:00Z\nx:\n" + laughs("  ") + "summary: *l8\n"


@contextmanager
def quickly() -> Iterator[None]:
    started = time.perf_counter()
    yield
    assert time.perf_counter() - started < FAST_SECONDS


def test_the_bomb_advisory_is_as_small_as_the_reported_one() -> None:
    assert len(BOMB_ADVISORY) <= 560


def test_a_bomb_is_refused_before_anything_is_built() -> None:
    with quickly(), pytest.raises(yaml.YAMLError, match=REFUSED) as raised:
        safe_yaml.load(BOMB_ADVISORY)

    assert len(str(raised.value)) < SHORT_MESSAGE


def test_an_anchor_inside_itself_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="an anchor is used inside itself"):
        safe_yaml.load("a: &x [1, *x]\n")


def test_ordinary_anchors_and_merges_still_load() -> None:
    text = "base: &base {image: python, cache: true}\njob:\n  <<: *base\n  cache: false\n"

    assert safe_yaml.load(text) == {
        "base": {"image": "python", "cache": True},
        "job": {"image": "python", "cache": False},
    }
    assert safe_yaml.load("v: 1.10\n", safe_yaml.STRINGS_LOADER) == {"v": "1.10"}


def test_an_echoed_value_is_cut_however_large() -> None:
    huge = [["x" * 10_000] * 1000] * 1000

    assert len(safe_yaml.excerpt(huge)) <= safe_yaml.MAX_ECHO_CHARS
    assert len(safe_yaml.excerpt("y" * 10_000)) == safe_yaml.MAX_ECHO_CHARS


def test_vulndb_import_skips_the_bomb_advisory_quickly(tmp_path: Path) -> None:
    advisories = tmp_path / "osv"
    advisories.mkdir()
    (advisories / "BOMB-1.yaml").write_text(BOMB_ADVISORY)
    project = tmp_path / "project"
    project.mkdir()
    run_cli(["vulndb", "status"], project)  # the CLI's modules imported: only the import timed

    with quickly():
        result = run_cli(["vulndb", "import", str(advisories), "--output", "json"], project)

    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["imported"] == 0
    [skipped] = report["skipped_invalid"]
    assert REFUSED in skipped["reason"]
    assert len(skipped["reason"]) <= safe_yaml.MAX_ECHO_CHARS


def bomb_spec() -> str:
    return "version: 1\nx:\n" + laughs("  ") + "jobs: *l8\n"


@pytest.mark.parametrize(
    ("name", "write", "read"),
    [
        (
            "conveyor.yml",
            lambda root: (root / "conveyor.yml").write_text(bomb_spec()),
            lambda root: run_cli(["lint"], root),
        ),
        (
            "the users file",
            lambda root: (root / "users.yml").write_text("x:\n" + laughs("  ") + "users: *l8\n"),
            lambda root: load_users(root / "users.yml"),
        ),
        (
            "the exceptions file",
            lambda root: (root / EXCEPTIONS_FILE).write_text(
                "x:\n" + laughs("  ") + "exceptions: *l8\n"
            ),
            load_exceptions,
        ),
        (
            "a flag definition",
            lambda root: (
                make_project(root),
                run_cli(["flags", "ls"], root),  # the store created: only the read timed
                (root / "flag.yml").write_text("x:\n" + laughs("  ") + "strategies: *l8\n"),
            ),
            lambda root: run_cli(
                ["flags", "set", "staging", "banner", "--definition", str(root / "flag.yml")],
                root,
            ),
        ),
    ],
)
def test_every_yaml_reader_refuses_the_bomb_quickly(
    tmp_path: Path, name: str, write: Callable[[Path], object], read: Callable[[Path], object]
) -> None:
    (tmp_path / ".conveyor").mkdir()
    write(tmp_path)

    with quickly():
        message = _refusal(read, tmp_path)

    assert REFUSED in message, f"{name}: {message}"
    assert len(message) < SHORT_MESSAGE, name


def _refusal(read: Callable[[Path], object], root: Path) -> str:
    """The message of a CLI's exit 2, or of the ConveyorError a loader raised."""
    try:
        result = read(root)
    except ConveyorError as error:
        return error.message
    exit_code, stderr = getattr(result, "exit_code", 0), getattr(result, "stderr", "")
    assert exit_code == 2, f"not refused: {result}"
    return str(stderr)


@pytest.mark.parametrize(
    "spec",
    [
        "version: " + "9" * 100_000 + "\njobs: {a: {run: 'true'}}\n",
        "version: 1\njobs:\n  a: {run: 'true', needs: [" + "b" * 100_000 + "]}\n",
        "version: 1\n" + "k" * 1000 + ": 1\njobs: {a: {run: 'true'}}\n",
    ],
    ids=["a long value", "a long job name", "a long key"],
)
def test_a_long_value_in_conveyor_yml_is_cut_in_the_error(tmp_path: Path, spec: str) -> None:
    (tmp_path / "conveyor.yml").write_text(spec)

    result = run_cli(["lint"], tmp_path)

    assert result.exit_code == 2
    assert "..." in result.stderr
    assert len(result.stderr) < SHORT_MESSAGE
