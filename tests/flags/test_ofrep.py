"""OFREP: the standard OpenFeature remote-evaluation provider against the real flag server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

from conveyor.flags.model import Flag
from conveyor.flags.server import create_app
from conveyor.flags.store import FlagLedger
from conveyor.store.store import Store
from flags.serving import serving

DOMAIN = "ofrep-tests"
BETA = Flag.model_validate(
    {
        "name": "beta",
        "enabled": True,
        "strategies": [{"type": "users", "users": ["ada"]}],
    }
)


@dataclass(frozen=True)
class Served:
    ledger: FlagLedger
    url: str


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        ledger.define("production", BETA)
        with serving(create_app(ledger)) as url:
            yield Served(ledger, url)
    api.clear_providers()


def client(url: str, environment: str = "production") -> OpenFeatureClient:
    api.set_provider(OFREPProvider(f"{url}/environments/{environment}"), DOMAIN)
    return api.get_client(DOMAIN)


def test_the_targeting_key_is_the_user_the_strategies_see(served: Served) -> None:
    flags = client(served.url)

    ada = flags.get_boolean_details("beta", False, EvaluationContext(targeting_key="ada"))
    bob = flags.get_boolean_details("beta", True, EvaluationContext(targeting_key="bob"))

    assert (ada.value, ada.reason, ada.variant) == (True, Reason.TARGETING_MATCH, "on")
    assert (bob.value, bob.variant) == (False, "off")


def test_an_unknown_flag_is_flag_not_found_with_the_default(served: Served) -> None:
    details = client(served.url).get_boolean_details("nope", True)

    assert (details.value, details.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)


def test_a_kill_is_answered_by_the_next_evaluation(served: Served) -> None:
    flags = client(served.url)
    ada = EvaluationContext(targeting_key="ada")
    assert flags.get_boolean_value("beta", False, ada) is True

    served.ledger.kill("production", "beta", actor="oncall", reason="errors")

    assert flags.get_boolean_value("beta", True, ada) is False


def test_bulk_evaluation_answers_every_flag_with_an_etag(served: Served) -> None:
    url = f"{served.url}/environments/production/ofrep/v1/evaluate/flags"
    body = {"context": {"targetingKey": "ada"}}

    first = httpx.post(url, json=body)
    again = httpx.post(url, json=body, headers={"If-None-Match": first.headers["ETag"]})

    assert first.status_code == 200
    assert [(f["key"], f["value"]) for f in first.json()["flags"]] == [("beta", True)]
    assert again.status_code == 304
