"""A pytest plugin that makes pytest-playwright launch a browser already on the machine.

Conveyor's `e2e` step loads it (`-p`) with `--system-browser /usr/bin/chromium`, so a
project's Playwright tests run in the system Chromium with no conftest of their own:
Playwright's bundled browsers are neither needed nor downloaded. Without the option the
plugin changes nothing.

Self-contained on purpose (pytest and the standard library only): the step copies this
file next to the job's other files, so it loads into whatever Python runs the tests.
"""

from __future__ import annotations

from typing import Any

import pytest

OPTION = "--system-browser"
# pytest-playwright's stand-in for pytest-base-url, when that is not installed.
BASE_URL_FALLBACK = "playwright-base-url"
# A headless run in a CI job: no sandbox (jobs often run as root or in a container),
# no GPU, and none of the background traffic a desktop browser starts.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("conveyor").addoption(
        OPTION,
        metavar="PATH",
        default=None,
        help="Launch this Chromium executable instead of Playwright's own browser.",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption(OPTION):
        return
    # Registered now, after the entry-point plugins (pytest-playwright among them), so
    # these fixtures come later than pytest-playwright's and override them; fixtures in
    # this module itself would be registered first (`-p`) and be shadowed.
    config.pluginmanager.register(SystemBrowser(), "conveyor-system-browser")
    if config.pluginmanager.has_plugin(BASE_URL_FALLBACK):
        config.pluginmanager.register(BaseUrl(), "conveyor-base-url")


class SystemBrowser:
    """Adds the executable and its arguments to pytest-playwright's launch options."""

    @pytest.fixture(scope="session")
    @classmethod
    def browser_type_launch_args(
        cls, pytestconfig: pytest.Config, browser_type_launch_args: dict[str, Any]
    ) -> dict[str, Any]:
        # Requesting the fixture's own name gives the one this overrides (--headed etc.).
        launch = dict(browser_type_launch_args)
        launch["executable_path"] = str(pytestconfig.getoption(OPTION))
        launch["args"] = [*CHROMIUM_ARGS, *launch.get("args", [])]
        return launch


class BaseUrl:
    """`base_url` as pytest-playwright's fallback gives it, minus a deprecation warning.

    The fallback is a session fixture on a plugin instance, which pytest >= 9.1 warns
    about; under a project's `filterwarnings = error` every test would error on it.
    """

    @pytest.fixture(scope="session")
    @classmethod
    def base_url(cls, pytestconfig: pytest.Config) -> str | None:
        value = pytestconfig.getoption("--base-url") or pytestconfig.getini("base_url")
        return str(value) if value else None
