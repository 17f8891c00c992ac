"""The loop from a push to the browser, in the system Chromium: `git push` to a real bare
repository whose `post-receive` hook sends GitHub's payload, signed, to the server; the
run the server queues and runs appears in the runs list, and its job's log lines stream
live into the log page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from conftest import wait_until
from server.conftest import SPEC
from server.forges import ForgeServer, MakeForgeServer, git, make_forge_server
from server.test_hooks_e2e import install_hook, push

__all__ = ["make_forge_server"]

CHROMIUM = "/usr/bin/chromium"
TICKING = """\
  talk:
    run: |
      for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; sleep 0.5; done
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


def _with_a_ticking_job(forge: ForgeServer) -> None:
    """The pushed commit's pipeline: the server's own, plus a job that talks slowly."""
    spec = forge.work / "conveyor.yml"
    text = spec.read_text()
    jobs_end = text.index("forge:")
    spec.write_text(text[:jobs_end] + TICKING + text[jobs_end:])
    git(forge.work, "add", "conveyor.yml")


def test_a_push_makes_a_run_appear_and_its_log_streams_live(
    make_forge_server: MakeForgeServer, chromium: Browser
) -> None:
    assert SPEC.rstrip().endswith("run: echo tested")  # TICKING goes under `jobs:`
    forge = make_forge_server("github")
    install_hook(forge)
    context = chromium.new_context(
        base_url=forge.served.url, extra_http_headers=forge.served.as_user("viewer")
    )
    try:
        page = context.new_page()
        page.goto("/runs")
        _with_a_ticking_job(forge)
        sha, _ = push(forge, "feature/live")

        def listed() -> bool:
            page.reload()
            return sha[:10] in page.locator("main").inner_text()

        wait_until(listed, "the pushed commit's run in the runs list")
        run_id = wait_until(
            lambda: next((e["run_id"] for e in forge.queue() if e["commit_sha"] == sha), None),
            "the run",
        )
        page.goto(f"/runs/{run_id}/jobs/talk/log")
        page.evaluate("window.notReloaded = true")
        assert "tick 8" not in page.locator("#log").inner_text()  # still running

        expect(page.locator("#log")).to_contain_text("tick 8", timeout=20_000)
        ticks = re.findall(r"tick (\d+)", page.locator("#log").inner_text())
        assert ticks == [str(n) for n in range(1, 9)]  # each line once, in order
        assert page.evaluate("window.notReloaded") is True
    finally:
        context.close()
    run = forge.served.context.store.get_run(run_id)
    assert (run.commit_sha, run.branch) == (sha, "feature/live")
