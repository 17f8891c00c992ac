"""The web UI in the system Chromium (Playwright): a run page whose job graph follows a
run live, a log page that streams new lines, and the runs list paging over 10,000 runs.
The browser authenticates with a bearer header, which Playwright adds to every request
(the event streams' included)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from conftest import CliProcess, wait_until
from server import screenshots
from server.bulk_runs import fill
from server.conftest import MakeServer, ServerUnderTest

CHROMIUM = "/usr/bin/chromium"
# The README's screenshot: taken by every run into the test's folder, and written to docs/
# when UPDATE_README_SCREENSHOTS=1 (so a test run leaves the checkout as it was).
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "run-page.png"

LIVE = """\
version: 1
name: web
jobs:
  build:
    run: printf '\\033[32mbuilt\\033[0m\\n'
  unit:
    needs: [build]
    run: echo unit tests passed
  lint:
    needs: [build]
    run: echo lint clean
  slow:
    needs: [unit, lint]
    run: for i in 1 2 3 4 5 6 7 8 9 10; do echo "tick $i"; sleep 0.3; done
  package:
    needs: [slow]
    run: echo packaged
"""

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Browser, served: ServerUnderTest, stack: list[BrowserContext]) -> Page:
    context = browser.new_context(
        base_url=served.url,
        extra_http_headers=served.as_user("viewer"),
        viewport={"width": 1200, "height": 800},
    )
    stack.append(context)
    return context.new_page()


@pytest.fixture
def contexts() -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def _start_run(served: ServerUnderTest, start_cli: Callable[..., CliProcess]) -> CliProcess:
    process = start_cli(["run", "--parallelism", "2"], served.project.root)
    wait_until(lambda: _state(served, "slow") == "running", "the slow job to start")
    return process


def _state(served: ServerUnderTest, job: str) -> str | None:
    try:
        return served.context.store.get_job(1, job).state.value
    except Exception:
        return None


def test_the_run_page_follows_the_run_live(
    tmp_path: Path,
    make_server: MakeServer,
    chromium: Browser,
    contexts: list[BrowserContext],
    start_cli: Callable[..., CliProcess],
) -> None:
    served = make_server(LIVE)
    process = _start_run(served, start_cli)
    page = _page(chromium, served, contexts)

    page.goto("/runs/1")
    page.evaluate("window.notReloaded = true")
    slow = page.locator('#graph .node[data-job="slow"]')
    package = page.locator('#graph .node[data-job="package"]')
    expect(slow).to_have_class(re.compile(r"\bstate-running\b"))
    expect(package).to_have_class(re.compile(r"\bstate-pending\b"))

    expect(slow).to_have_class(re.compile(r"\bstate-success\b"), timeout=15_000)
    expect(package).to_have_class(re.compile(r"\bstate-success\b"), timeout=15_000)
    expect(page.locator('#jobs tr[data-job="package"] .state')).to_have_text("success")
    expect(page.locator("#run-state")).to_have_text("success", timeout=15_000)
    assert page.evaluate("window.notReloaded") is True  # the same page, recoloured live
    assert process.finish() == 0
    expect(page.locator("#run-finished")).not_to_be_empty()  # final timings, read again

    page.screenshot(path=str(tmp_path / "run-page.png"), full_page=True)
    screenshots.keep(tmp_path / "run-page.png", README_SCREENSHOT)
    page.locator('#graph .node[data-job="build"]').click()
    expect(page.locator("#log")).to_contain_text("built")
    expect(page.locator("#log .ansi-fg-2")).to_have_text("built")


def test_the_log_page_streams_new_lines(
    make_server: MakeServer,
    chromium: Browser,
    contexts: list[BrowserContext],
    start_cli: Callable[..., CliProcess],
) -> None:
    served = make_server(LIVE)
    process = _start_run(served, start_cli)
    page = _page(chromium, served, contexts)

    page.goto("/runs/1/jobs/slow/log")
    page.evaluate("window.notReloaded = true")
    first = page.locator("#log").inner_text()
    assert "tick 10" not in first

    expect(page.locator("#log")).to_contain_text("tick 10", timeout=15_000)
    text = page.locator("#log").inner_text()
    ticks = re.findall(r"tick (\d+)", text)
    assert ticks == [str(n) for n in range(1, 11)]  # each line once, in order
    assert page.evaluate("window.notReloaded") is True
    assert process.finish() == 0


def test_the_runs_list_pages_through_10000_runs(
    served: ServerUnderTest, chromium: Browser, contexts: list[BrowserContext]
) -> None:
    fill(served.context.store, 10_000, jobs_per_run=2)
    page = _page(chromium, served, contexts)

    def ids() -> list[int]:
        return [
            int(i)
            for i in page.locator("#runs tr[data-run]").evaluate_all(
                "rows => rows.map(r => r.dataset.run)"
            )
        ]

    page.goto("/runs")
    pages = [ids()]
    for _ in range(2):
        page.locator("a.older").click()
        page.wait_for_url(re.compile(r"before="))
        pages.append(ids())
    seen = [run for listed in pages for run in listed]
    assert seen == list(range(10_000, 10_000 - 150, -1))  # consecutive: no gap, no repeat
    page.locator("a.newer").click()
    page.wait_for_url(re.compile(r"after="))
    assert ids() == pages[1]

    page.goto("/runs")
    page.select_option("select[name=status]", "failed")
    page.fill("input[name=branch]", "develop")
    page.locator("form.filters button").click()
    page.wait_for_url(re.compile(r"status=failed"))
    states = page.locator("#runs tr[data-run] .state").all_inner_texts()
    assert len(states) == 50 and set(states) == {"failed"}
    page.locator("a.older").click()
    page.wait_for_url(re.compile(r"before=.*|.*before="))
    assert set(page.locator("#runs tr[data-run] .state").all_inner_texts()) == {"failed"}
    assert page.locator("input[name=branch]").input_value() == "develop"
