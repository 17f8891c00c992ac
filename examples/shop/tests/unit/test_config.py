"""Settings from the environment, and how `python -m app` reports bad ones."""

from __future__ import annotations

import pytest

from app.__main__ import main
from app.config import ConfigError, Settings


def test_defaults_when_nothing_is_set() -> None:
    assert Settings.from_env({}) == Settings(
        db_path="shop.db", version="dev", fault_rate=0.0, extra_latency_ms=0.0
    )


def test_values_are_read_from_the_environment() -> None:
    env = {
        "SHOP_DB": "/data/shop.db",
        "SHOP_VERSION": "1.4.0",
        "SHOP_FAULT_RATE": "0.25",
        "SHOP_EXTRA_LATENCY_MS": "150",
    }

    assert Settings.from_env(env) == Settings(
        db_path="/data/shop.db", version="1.4.0", fault_rate=0.25, extra_latency_ms=150.0
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SHOP_FAULT_RATE": "1.5"}, "SHOP_FAULT_RATE must be between 0 and 1"),
        ({"SHOP_FAULT_RATE": "-0.1"}, "SHOP_FAULT_RATE must be between 0 and 1"),
        ({"SHOP_FAULT_RATE": "often"}, "SHOP_FAULT_RATE must be a number"),
        ({"SHOP_EXTRA_LATENCY_MS": "-5"}, "SHOP_EXTRA_LATENCY_MS must not be negative"),
    ],
)
def test_bad_values_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_main_refuses_a_bad_setting_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SHOP_FAULT_RATE", "lots")

    assert main() == 2
    assert capsys.readouterr().err == "shop: SHOP_FAULT_RATE must be a number, got 'lots'\n"


def test_main_refuses_a_bad_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "http")

    assert main() == 2
    assert "PORT must be a port number" in capsys.readouterr().err
