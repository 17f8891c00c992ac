"""The release, approval and flag pages in the system Chromium through Playwright, against
a real server: a reviewer approves a production deploy while the author's attempt is
refused; a flag is killed from the UI; a canary's page (its screenshot is the README's)
updates live from the event stream.

The browser authenticates with a bearer header on every request (login sessions are
another part of the server); bearer requests need no CSRF token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from conftest import wait_until
from conveyor.approvals.model import ApprovalState
from conveyor.flags.store import FlagLedger
from conveyor.service.approvals import run_statuses
from conveyor.store.records import EventKind
from server import screenshots
from server.conftest import MakeServer, ServerUnderTest
from server.test_ui_releases import approval_setup
from server.ui_data import NEW, NEW_DIGEST, REPOSITORY, SPEC, record_canary

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
# The README's screenshot: taken by every run into the test's folder, and written to docs/
# when UPDATE_README_SCREENSHOTS=1 (so a test run leaves the checkout as it was).
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "images" / "canary-page.png"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def shop(make_server: MakeServer) -> ServerUnderTest:
    return make_server(SPEC)


def page_as(browser: Browser, served: ServerUnderTest, user: str) -> Page:
    context = browser.new_context(
        base_url=served.url,
        extra_http_headers=served.as_user(user),
        viewport={"width": 1280, "height": 1500},
    )
    return context.new_page()


def test_a_reviewer_approves_production_while_the_author_is_refused(
    browser: Browser, shop: ServerUnderTest
) -> None:
    run_id = approval_setup(shop)  # the commit's author, ada, is a reviewer too
    store = shop.context.store

    author = page_as(browser, shop, "ada")
    author.goto("/approvals")
    card = author.locator(f'section.approval[data-run="{run_id}"]')
    card.locator("textarea[name=comment]").fill("my own change, looks fine to me")
    card.get_by_role("button", name="Approve").click()
    outcome = author.locator("#outcome")
    expect(outcome).to_contain_text("Refused")
    expect(outcome).to_contain_text("ada wrote the change")
    refused = [e for e in store.events() if e.kind == EventKind.APPROVAL_REFUSED]
    assert [(e.data["code"], e.data["identity"], e.data["via"]) for e in refused] == [
        ("author", "ada", "web")
    ]
    assert run_statuses(store, run_id)[0].state is ApprovalState.PENDING

    reviewer = page_as(browser, shop, "reviewer")
    reviewer.goto("/approvals")
    card = reviewer.locator(f'#waiting section.approval[data-run="{run_id}"]')
    expect(card).to_contain_text("first")  # the change's commit
    card.locator("textarea[name=comment]").fill("checked the canary in staging")
    card.get_by_role("button", name="Approve").click()
    expect(reviewer.locator("#outcome")).to_contain_text("now approved")
    decided = reviewer.locator("#decided")
    expect(decided).to_contain_text("reviewer")
    expect(decided).to_contain_text("checked the canary in staging")
    status = run_statuses(store, run_id)[0]
    assert status.state is ApprovalState.APPROVED
    assert [d.identity for d in status.approvals] == ["reviewer"]
    author.context.close()
    reviewer.context.close()


def test_a_script_in_a_comment_never_runs(browser: Browser, shop: ServerUnderTest) -> None:
    run_id = approval_setup(shop)
    attack = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
    author = page_as(browser, shop, "ada")  # an author may reject their own change
    dialogs: list[str] = []

    def seen(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    author.on("dialog", seen)
    author.goto("/approvals")
    card = author.locator(f'section.approval[data-run="{run_id}"]')
    card.locator("textarea[name=comment]").fill(attack)
    card.get_by_role("button", name="Reject").click()
    expect(author.locator("#outcome")).to_contain_text("now rejected")
    author.goto("/approvals")
    expect(author.locator("#decided")).to_contain_text(attack)
    assert author.locator("#decided img").count() == 0
    assert dialogs == []
    author.context.close()


def test_a_flag_is_killed_from_the_ui_after_confirming(
    browser: Browser, shop: ServerUnderTest
) -> None:
    ledger = FlagLedger(shop.context.store.engine)
    ledger.set_enabled("staging", "new-banner", True, actor="someone")
    page = page_as(browser, shop, "developer")
    page.goto("/flags/staging")
    row = page.locator('tr[data-flag="new-banner"]')
    expect(row).to_contain_text("on")
    row.get_by_role("link", name="Kill…").click()
    expect(page.locator("h1")).to_contain_text("Kill new-banner in staging?")
    page.locator("input[name=reason]").fill("5xx on checkout")
    page.get_by_role("button", name="Kill the flag").click()  # not confirmed: stays here
    expect(page.locator("h1")).to_contain_text("Kill new-banner")
    assert ledger.flag("staging", "new-banner").flag.enabled
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Kill the flag").click()
    page.wait_for_url("**/flags/staging")
    expect(page.locator('tr[data-flag="new-banner"] .state')).to_have_text("off")
    expect(page.locator("table.history")).to_contain_text("killed")
    assert not ledger.flag("staging", "new-banner").flag.enabled
    killed = [e for e in ledger.history("staging", "new-banner") if e.kind == "flag.killed"]
    assert [(e.actor, e.data["reason"]) for e in killed] == [("developer", "5xx on checkout")]
    page.context.close()


def test_a_canary_page_is_drawn_and_updates_live(
    tmp_path: Path, browser: Browser, shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = shop.context.store
    recorded = record_canary(store, monkeypatch, time.time() - 400)
    page = page_as(browser, shop, "viewer")
    page.goto(f"/environments/staging/releases/{recorded.canary_deploy}")
    expect(page.locator("#decision")).to_contain_text("succeeded")
    expect(page.locator("svg.chart polyline").first).to_be_visible()
    taken = tmp_path / "canary-page.png"
    page.screenshot(path=str(taken))  # the first 1500 px: decision, steps, charts
    screenshots.keep(taken, README_SCREENSHOT)

    # A deploy in progress: the judge's next verdict shows without a reload.
    running = store.ledger.deploys.begin(
        "staging",
        release_id="shop-v3",
        repository=REPOSITORY,
        digest=NEW_DIGEST,
        ports=[18092],
        previous=NEW,
        actor="developer",
        run_id=None,
    )
    page.goto(f"/environments/staging/releases/{running.id}")
    expect(page.locator("table.verdicts")).to_contain_text("The judge has not spoken yet")
    wait_until(lambda: page.evaluate("document.body.dataset.live") == "connected", "the stream")
    store.ledger.history.record(
        EventKind.RELEASE_DECISION,
        "staging",
        deploy_id=running.id,
        verdict="rollback",
        reason="canary at 3.10x the rate of baseline+stable",
        elapsed=12.0,
        evidence={"counts": {"canary": {"requests": 300, "errors": 31, "slow": 0}}},
    )
    expect(page.locator("table.verdicts")).to_contain_text("canary at 3.10x", timeout=10_000)
    assert page.evaluate("document.body.dataset.liveUpdates") == "1"
    page.context.close()
