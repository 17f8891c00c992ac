"""The `real` marker, checked, and how pytest-xdist shares the suite between workers.

A test *starts a real component* when it (or a fixture it uses) starts one of the
programs in `COMPONENTS` or one of Conveyor's own daemons (`DAEMON_MODULES`): it then
needs the `real` marker (`pytest -m "not real"` is the in-memory part of the suite). An
audit hook sees every `subprocess.Popen` of this process, so a test that starts one without
the marker fails, naming what it started; the marker cannot drift from what tests do.

Under xdist (`make unit` runs `pytest -n 2 --dist loadgroup --no-loadscope-reorder`):
- tests that share an instance of a module- or session-scoped fixture of this suite (a
  staging deployment of the shop, an imported advisory database, ...) go to one worker as
  one `xdist_group`, so no second worker builds it again; fixtures that no test uses
  together stay in groups of their own, which may run side by side;
- real tests start first, the longest-bounded (by their `timeout` marker) first, so that
  the demo does not begin last while the other worker idles.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import pytest

REAL = "real"
# External programs that are components in their own right: servers, container tools, a
# browser, scanners of a live server.
COMPONENTS = frozenset(
    {
        "docker-registry",
        "skopeo",
        "podman",
        "haproxy",
        "prometheus",
        "prometheus-alertmanager",
        "postgres",
        "chromium",
        "wapiti",
        "schemathesis",
        "locust",
        "redis-server",
    }
)
# Conveyor's own long-running processes (`python -m MODULE`), and the E2E runner's plugin
# (it starts the browser).
DAEMON_MODULES = frozenset(
    {
        "conveyor.deploy.routers.proxy",
        "conveyor.deploy.runtimes.supervisor",
        "locust",
        "conveyor_e2e_browser",
    }
)
_started: list[str] = []  # components started since the current test's setup began
# (id(fixturedef), param index) -> what its setup started: a parametrized fixture may
# start a component for one of its parameters only.
_fixture_started: dict[tuple[int, int], list[str]] = {}


def component_of(args: Any) -> str | None:
    """The component an argv starts, if any (`args` as the audit event gives it)."""
    argv: Sequence[Any] = [args] if isinstance(args, str | bytes | PurePath) else args
    words = [str(word) for word in argv]
    if not words:
        return None
    program = PurePath(words[0]).name
    if program in COMPONENTS:
        return program
    return next((word for word in words[1:] if word in DAEMON_MODULES), None)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "subprocess.Popen":
        component = component_of(args[1])
        if component is not None:
            _started.append(component)


_hooked: list[bool] = []


def pytest_configure(config: pytest.Config) -> None:
    if not _hooked:  # once per process (pytester sessions configure again)
        sys.addaudithook(_audit)  # cannot be removed: it only appends to a list
        _hooked.append(True)


# --- the marker, checked ---------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
    before = len(_started)
    try:
        return (yield)
    finally:
        if len(_started) > before:
            key = (id(fixturedef), getattr(request, "param_index", 0))
            _fixture_started[key] = _started[before:]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Any:
    _started.clear()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report: pytest.TestReport = yield
    if call.when == "teardown" and report.passed and item.get_closest_marker(REAL) is None:
        started = sorted(set(_started) | set(_started_by_fixtures(item)))
        if started:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} starts {', '.join(started)} but is not marked "
                f"`@pytest.mark.{REAL}` (see tests/real_components.py)"
            )
    return report


def _started_by_fixtures(item: pytest.Item) -> list[str]:
    """What the fixtures of `item` started, also when an earlier test set them up."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    callspec = getattr(item, "callspec", None)
    indices: dict[str, int] = callspec.indices if callspec is not None else {}
    return [
        component
        for name, definitions in info.name2fixturedefs.items()
        for definition in definitions
        for component in _fixture_started.get((id(definition), indices.get(name, 0)), [])
    ]


# --- scheduling under xdist ------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)  # before xdist appends each test's group to its node id
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item, group in _shared_fixture_groups(items).items():
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):  # a worker: the order in which work is handed out
        default = float(config.getini("timeout") or 0)
        items.sort(key=lambda item: _start_order(item, default))


def _shared_fixture_groups(items: list[pytest.Item]) -> dict[pytest.Item, str]:
    """Tests that share an instance of a module- or session-scoped fixture of this suite,
    directly or through other tests, form one group (named after one of those fixtures).
    Two such fixtures of one module that no test uses together stay in two groups."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    shared = {item: _shared_instances(item) for item in items}
    for keys in shared.values():
        for key in keys:
            parent.setdefault(key, key)
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    return {item: root(keys[0]) for item, keys in shared.items() if keys}


def _shared_instances(item: pytest.Item) -> list[str]:
    """The module- and session-scoped fixture instances of this suite `item` uses."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    module = item.nodeid.split("::", 1)[0]
    found = []
    for name in sorted(info.names_closure):
        definitions = info.name2fixturedefs.get(name)
        if not definitions or not _ours(definitions[-1]):
            continue
        definition = definitions[-1]
        if definition.scope == "session":
            found.append(f"{definition.baseid}::{name}")
        elif definition.scope == "module":
            found.append(f"{module}::{name}")
    return found


def _ours(definition: pytest.FixtureDef[Any]) -> bool:
    """A fixture of this suite (not of pytest or a plugin)."""
    function = definition.func
    return getattr(function, "__module__", "").split(".", 1)[0] not in _PLUGIN_PACKAGES


_PLUGIN_PACKAGES = frozenset({"_pytest", "pytest_playwright", "pytest_timeout", "xdist"})


def _start_order(item: pytest.Item, default_timeout: float) -> tuple[int, float]:
    marker = item.get_closest_marker("timeout")
    bound = float(marker.args[0]) if marker and marker.args else default_timeout
    return (0 if item.get_closest_marker(REAL) else 1, -bound)
