"""The check behind the `real` marker, and the xdist groups of shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from real_components import component_of

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent
CONFTEST = f"import sys\nsys.path.insert(0, {str(HERE)!r})\npytest_plugins = ['real_components']\n"


@pytest.mark.parametrize(
    ("argv", "component"),
    [
        (["/usr/sbin/haproxy", "-f", "x.cfg"], "haproxy"),
        (
            [sys.executable, "-m", "conveyor.deploy.routers.proxy", "--detach"],
            "conveyor.deploy.routers.proxy",
        ),
        (["python", "-m", "locust", "-f", "l.py"], "locust"),
        (["python", "-m", "pytest", "-p", "conveyor_e2e_browser"], "conveyor_e2e_browser"),
        (["git", "status"], None),
        ("podman", "podman"),
        ([], None),
    ],
)
def test_component_of_names_servers_tools_and_daemons(
    argv: list[str] | str, component: str | None
) -> None:
    assert component_of(argv) == component


def fake_program(directory: Path, name: str) -> Path:
    program = directory / name
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    return program


TESTS = """
import subprocess
import pytest

HAPROXY = {haproxy!r}


@pytest.fixture(scope="module")
def started():
    subprocess.run([HAPROXY], check=True)


def test_starts_one_unmarked():
    subprocess.run([HAPROXY], check=True)


@pytest.mark.real
def test_starts_one_marked():
    subprocess.run([HAPROXY], check=True)


@pytest.mark.real
def test_its_fixture_starts_one_marked(started):
    pass


def test_its_fixture_started_one_earlier_unmarked(started):
    pass


def test_starts_git_only():
    subprocess.run(["git", "--version"], check=True, capture_output=True)
"""


def test_an_unmarked_test_that_starts_a_component_fails_naming_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(TESTS.format(haproxy=str(fake_program(pytester.path, "haproxy"))))

    result = pytester.runpytest_subprocess("-o", "markers=real: starts a real component")

    result.assert_outcomes(passed=5, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*test_starts_one_unmarked starts haproxy but is not marked*",
            "*test_its_fixture_started_one_earlier_unmarked starts haproxy but is not marked*",
        ]
    )


def test_tests_sharing_a_module_fixture_form_one_group_and_others_none(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def a():
            return 1

        @pytest.fixture(scope="module")
        def b():
            return 2

        def test_a1(a): pass
        def test_a2(a): pass
        def test_b(b): pass
        def test_alone(tmp_path): pass
        """
    )

    items, _ = pytester.inline_genitems()

    groups = {}
    for item in items:
        marker = item.get_closest_marker("xdist_group")
        groups[item.name] = marker.args[0] if marker else None
    assert groups["test_a1"] == groups["test_a2"] is not None
    assert groups["test_b"] not in (None, groups["test_a1"])
    assert groups["test_alone"] is None
