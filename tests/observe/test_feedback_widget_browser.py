"""The shop's feedback widget in the system Chromium: the catalogue page, served by the
real shop behind a real builtin router, posts a rating and a text that the router stamps
with the release and the banner's variant, under the shop's Content-Security-Policy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import wait_until
from conveyor.deploy.model import Backend, RouteTable
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.observe.feedback import spooled
from deploy.named_servers import free_port

pytestmark = [pytest.mark.real, pytest.mark.timeout(60)]

CHROMIUM = "/usr/bin/chromium"
SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[str]:
    """The shop on a free port (no flag service: the banner is off); yields its address."""
    port = free_port()
    env = os.environ | {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHOP_DB": str(tmp_path / "shop.db"),
        "SHOP_VERSION": "v1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=SHOP,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(answers, "the shop to start")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def router(tmp_path: Path, shop: str) -> Iterator[BuiltinRouter]:
    router = BuiltinRouter(tmp_path / "router", free_port(), free_port())
    router.ensure_running()
    router.set_routes(RouteTable(backends=(Backend("shop-v1", "v1", (shop,), 100),)))
    yield router
    router.stop()


def test_the_widget_posts_from_the_shop_page(router: BuiltinRouter) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page()
            refused: list[str] = []
            page.on("console", lambda message: refused.append(message.text))
            page.goto(router.url + "/")
            page.click('#shop-feedback button[data-rating="4"]')
            page.fill("#shop-feedback textarea", "Search is hard to find")
            page.click('#shop-feedback button[type="submit"]')
            expect(page.locator("#shop-feedback-status")).to_have_text(
                "Thank you for your feedback."
            )
        finally:
            browser.close()
    assert not [text for text in refused if "Content Security Policy" in text]
    [post] = spooled(router.state_dir)
    assert post["rating"] == 4 and post["text"] == "Search is hard to find"
    # The page set the sticky cookie; the browser sent it with the post.
    assert post["release_id"] == "shop-v1" and post["route"] == "sticky"
    assert post["variants"] == {"new-catalogue-banner": "off"}
