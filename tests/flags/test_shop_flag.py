"""The sample service's flag end to end: the shop (`python -m app`) asks a real flag server
whether to show its catalogue banner, and a kill hides it on the next page view."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import WAIT_SECONDS, wait_until
from conveyor.flags.server import create_app
from conveyor.flags.store import FlagLedger
from conveyor.store.store import Store
from deploy.apps import free_port
from flags.serving import serving

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
BANNER_FLAG = "new-catalogue-banner"
BANNER_ID = 'id="banner"'


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[FlagLedger]:
    with Store(tmp_path / "state") as store:
        yield FlagLedger(store.engine)


def start_shop(tmp_path: Path, port: int, flags_url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHOP_DB": str(tmp_path / "shop.db"),
        "CONVEYOR_FLAGS_URL": flags_url,
        "CONVEYOR_ENVIRONMENT": "staging",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app"],
        cwd=SHOP,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def healthy(url: str, shop: subprocess.Popen[str]) -> bool:
    if shop.poll() is not None:
        pytest.fail(f"the shop exited: {shop.communicate()[1]}")
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_the_shop_shows_its_banner_while_the_flag_is_on(tmp_path: Path, ledger: FlagLedger) -> None:
    ledger.set_enabled("staging", BANNER_FLAG, True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(create_app(ledger)) as flags_url:
        shop = start_shop(tmp_path, port, flags_url)
        try:
            wait_until(lambda: healthy(url, shop), "the shop to start")
            with_flag = httpx.get(url + "/").text
            ledger.kill("staging", BANNER_FLAG)
            killed = httpx.get(url + "/").text
        finally:
            shop.terminate()
            shop.communicate(timeout=WAIT_SECONDS)

    assert BANNER_ID in with_flag
    assert BANNER_ID not in killed
    assert "Conveyor Shop" in killed
