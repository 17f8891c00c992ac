"""The catalogue banner behind the `new-catalogue-banner` flag, against a stand-in for
Conveyor's evaluation API (its real server is exercised in Conveyor's own tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.flags import NEW_CATALOGUE_BANNER, FlagClient, NoFlags, flag_client
from app.main import create_app

BANNER_ID = 'id="banner"'
Handler = Callable[[httpx.Request], httpx.Response]


def evaluation_api(value: object, seen: list[dict[str, object]]) -> httpx.MockTransport:
    """Answers every evaluation with `value`, recording the request bodies."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/evaluate"
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"value": value, "reason": "STATIC", "version": 1})

    return httpx.MockTransport(handle)


def page_with(tmp_path: Path, flags: FlagClient | NoFlags) -> str:
    settings = Settings(db_path=str(tmp_path / "shop.db"), version="1.2.3")
    with TestClient(create_app(settings=settings, flags=flags)) as client:
        response: httpx.Response = client.get("/")
    return response.text


def test_the_banner_shows_when_the_flag_is_on(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    flags = FlagClient("http://flags", "staging", transport=evaluation_api(True, seen))

    assert BANNER_ID in page_with(tmp_path, flags)
    assert seen[0]["environment"] == "staging"
    assert seen[0]["flag"] == NEW_CATALOGUE_BANNER
    assert seen[0]["context"] == {
        "appName": "shop",
        "version": "1.2.3",
        "remoteAddress": "testclient",
    }


def test_the_banner_is_hidden_when_the_flag_is_off(tmp_path: Path) -> None:
    flags = FlagClient("http://flags", "staging", transport=evaluation_api(False, []))

    assert BANNER_ID not in page_with(tmp_path, flags)


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: httpx.Response(404, json={"detail": "no flag"}),
        lambda request: httpx.Response(200, text="not json"),
        lambda request: httpx.Response(200, json={"value": "yes"}),
        lambda request: httpx.Response(200, json=["not", "an", "object"]),
    ],
    ids=["unknown-flag", "not-json", "not-a-boolean", "not-an-object"],
)
def test_a_bad_answer_gives_the_default(handler: Handler) -> None:
    flags = FlagClient("http://flags", "staging", transport=httpx.MockTransport(handler))
    try:
        assert flags.is_enabled(NEW_CATALOGUE_BANNER, {}, default=True) is True
        assert flags.is_enabled(NEW_CATALOGUE_BANNER, {}, default=False) is False
    finally:
        flags.close()


def test_an_unreachable_flag_service_gives_the_default(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    flags = FlagClient("http://flags", "staging", transport=httpx.MockTransport(refuse))

    assert BANNER_ID not in page_with(tmp_path, flags)


def test_without_a_flags_url_every_flag_is_at_its_default(tmp_path: Path) -> None:
    flags = flag_client("", "production")

    assert isinstance(flags, NoFlags)
    assert flags.is_enabled(NEW_CATALOGUE_BANNER, {}, default=True) is True
    assert BANNER_ID not in page_with(tmp_path, flags)


def test_the_flags_url_and_environment_come_from_conveyor() -> None:
    settings = Settings.from_env(
        {"CONVEYOR_FLAGS_URL": "http://127.0.0.1:4242", "CONVEYOR_ENVIRONMENT": "production"}
    )

    assert (settings.flags_url, settings.environment) == ("http://127.0.0.1:4242", "production")
    client = flag_client(settings.flags_url, settings.environment)
    try:
        assert isinstance(client, FlagClient)
        assert client.environment == "production"
    finally:
        client.close()
