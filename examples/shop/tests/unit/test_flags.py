"""The catalogue banner behind the `new-catalogue-banner` flag, through OpenFeature.

An in-memory OpenFeature provider stands in for the flag service here; the OFREP
provider against Conveyor's real flag server is exercised in Conveyor's own tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagResolutionDetails, Reason
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

from app.config import Settings
from app.flags import NEW_CATALOGUE_BANNER, FlagClient, NoFlags, flag_client
from app.main import create_app

BANNER_ID = 'id="banner"'


def banner_flag(on: bool, seen: list[EvaluationContext] | None = None) -> InMemoryProvider:
    def record(flag: InMemoryFlag[Any], context: EvaluationContext) -> FlagResolutionDetails[Any]:
        if seen is not None:
            seen.append(context)
        return FlagResolutionDetails(on, reason=Reason.STATIC, variant="on" if on else "off")

    variants = {"on": True, "off": False}
    flag = InMemoryFlag("on" if on else "off", variants, context_evaluator=record)
    return InMemoryProvider({NEW_CATALOGUE_BANNER: flag})


def page_with(tmp_path: Path, flags: FlagClient | NoFlags) -> str:
    settings = Settings(db_path=str(tmp_path / "shop.db"), version="1.2.3")
    with TestClient(create_app(settings=settings, flags=flags)) as client:
        response: httpx.Response = client.get("/")
    return response.text


def test_the_banner_shows_when_the_flag_is_on(tmp_path: Path) -> None:
    seen: list[EvaluationContext] = []
    flags = FlagClient(banner_flag(True, seen), "staging")

    assert BANNER_ID in page_with(tmp_path, flags)
    assert seen[0].targeting_key == "testclient"
    assert seen[0].attributes == {
        "appName": "shop",
        "version": "1.2.3",
        "remoteAddress": "testclient",
    }


def test_the_banner_is_hidden_when_the_flag_is_off(tmp_path: Path) -> None:
    assert BANNER_ID not in page_with(tmp_path, FlagClient(banner_flag(False), "staging"))


def test_an_unknown_flag_gives_the_default() -> None:
    flags = FlagClient(InMemoryProvider({}), "staging")
    assert flags.is_enabled(NEW_CATALOGUE_BANNER, {}, default=True) is True
    assert flags.is_enabled(NEW_CATALOGUE_BANNER, {}, default=False) is False


def test_an_unreachable_flag_service_gives_the_default(tmp_path: Path) -> None:
    flags = flag_client("http://127.0.0.1:9", "staging")  # nothing listens on port 9

    assert isinstance(flags, FlagClient)
    assert BANNER_ID not in page_with(tmp_path, flags)
    assert flags.is_enabled(NEW_CATALOGUE_BANNER, {}, default=True) is True


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
