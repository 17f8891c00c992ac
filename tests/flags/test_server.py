"""The evaluation HTTP API, served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conveyor.flags.model import Flag
from conveyor.flags.server import create_app
from conveyor.flags.store import FlagLedger
from conveyor.store.store import Store
from flags.serving import serving

BANNER = Flag.model_validate(
    {
        "name": "banner",
        "enabled": True,
        "strategies": [
            {"type": "users", "users": ["ada"]},
            {
                "type": "default",
                "constraints": [{"context_name": "country", "operator": "IN", "values": ["fr"]}],
            },
        ],
        "variants": [
            {"name": "yellow", "weight": 1, "payload": {"type": "string", "value": "#ff0"}}
        ],
    }
)


@dataclass(frozen=True)
class Api:
    ledger: FlagLedger
    http: httpx.Client


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        ledger.define("staging", BANNER)
        with serving(create_app(ledger)) as url, httpx.Client(base_url=url) as http:
            yield Api(ledger, http)


def test_get_evaluates_with_the_query_string_as_context(api: Api) -> None:
    listed = api.http.get("/flags/staging/banner", params={"userId": "ada"}).json()
    french = api.http.get("/flags/staging/banner", params={"country": "fr"}).json()
    other = api.http.get("/flags/staging/banner", params={"country": "de"}).json()

    assert listed == {
        "environment": "staging",
        "flag": "banner",
        "value": True,
        "variant": "yellow",
        "payload": {"type": "string", "value": "#ff0"},
        "reason": "TARGETING_MATCH",
        "detail": "strategy 1: userId ada is listed",
        "version": 1,
    }
    assert (french["value"], french["detail"]) == (True, "strategy 2: default (targeted)")
    assert (other["value"], other["reason"], other["variant"]) == (False, "DEFAULT", None)


def test_post_evaluate_takes_a_json_context(api: Api) -> None:
    body = {"environment": "staging", "flag": "banner", "context": {"userId": "ada"}}

    answer = api.http.post("/evaluate", json=body)

    assert answer.status_code == 200
    assert (answer.json()["value"], answer.json()["variant"]) == (True, "yellow")


def test_a_kill_is_served_by_the_next_request(api: Api) -> None:
    api.ledger.kill("staging", "banner")

    answer = api.http.get("/flags/staging/banner", params={"userId": "ada"}).json()

    assert (answer["value"], answer["reason"], answer["version"]) == (False, "DISABLED", 2)


def test_unknown_flags_and_bad_requests(api: Api) -> None:
    missing = api.http.get("/flags/staging/ghost")
    elsewhere = api.http.post("/evaluate", json={"environment": "prod", "flag": "banner"})
    malformed = api.http.post("/evaluate", json={"flag": "banner"})

    assert missing.status_code == 404
    assert missing.json() == {"detail": "no flag 'ghost' in staging"}
    assert elsewhere.status_code == 404
    assert malformed.status_code == 422


def test_definitions_revalidate_by_etag(api: Api) -> None:
    first = api.http.get("/flags/staging")
    etag = first.headers["ETag"]
    unchanged = api.http.get("/flags/staging", headers={"If-None-Match": etag})
    api.ledger.rollout("staging", "banner", 30)
    changed = api.http.get("/flags/staging", headers={"If-None-Match": etag})

    assert first.status_code == 200
    assert first.json() == {
        "environment": "staging",
        "version": 1,
        "flags": [BANNER.model_dump(mode="json")],
        "segments": [],
    }
    assert etag == '"1"'
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert changed.status_code == 200
    assert (changed.headers["ETag"], changed.json()["version"]) == ('"2"', 2)
    assert Flag.model_validate(changed.json()["flags"][0]).strategies[-1].type == "rollout"


def test_an_environment_without_flags_has_version_0(api: Api) -> None:
    answer = api.http.get("/flags/production")

    assert answer.json() == {"environment": "production", "version": 0, "flags": [], "segments": []}
    assert api.http.get("/healthz").json() == {"status": "ok"}
