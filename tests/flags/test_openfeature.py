"""The OpenFeature provider: an OpenFeature client against a real flag server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.provider import ProviderStatus

from conftest import wait_until
from conveyor.flags.model import Flag
from conveyor.flags.server import create_app
from conveyor.flags.store import FlagLedger
from conveyor.store.store import Store
from conveyor_openfeature import ConveyorProvider, context_of
from flags.serving import serving

DOMAIN = "conveyor-tests"


def payload_flag(name: str, kind: str, value: str) -> Flag:
    variant = {"name": f"{name}-on", "weight": 1, "payload": {"type": kind, "value": value}}
    return Flag.model_validate({"name": name, "enabled": True, "variants": [variant]})


FLAGS = [
    Flag.model_validate(
        {
            "name": "banner",
            "enabled": True,
            "strategies": [
                {"type": "users", "users": ["ada"]},
                {"type": "rollout", "percentage": 100, "stickiness": "tenant"},
            ],
            "variants": [{"name": "yellow", "weight": 1}],
        }
    ),
    payload_flag("greeting", "string", "hello"),
    payload_flag("page-size", "number", "25"),
    payload_flag("ratio", "number", "0.5"),
    payload_flag("limits", "json", '{"per_minute": 60}'),
]


@dataclass(frozen=True)
class Setup:
    ledger: FlagLedger
    url: str


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        for flag in FLAGS:
            ledger.define("production", flag)
        with serving(create_app(ledger)) as url:
            yield Setup(ledger, url)


@pytest.fixture
def connect() -> Iterator[type[ConveyorProvider]]:
    """Providers registered through this are shut down (threads, connections) at teardown."""
    yield ConveyorProvider
    api.clear_providers()


def client_for(provider: ConveyorProvider) -> OpenFeatureClient:
    api.set_provider_and_wait(provider, DOMAIN)
    return api.get_client(DOMAIN)


def test_values_and_details_follow_the_definitions(
    setup: Setup, connect: type[ConveyorProvider]
) -> None:
    client = client_for(connect(setup.url, "production", refresh_interval=0))
    ada = EvaluationContext(targeting_key="ada")

    listed = client.get_boolean_details("banner", False, ada)
    split = client.get_boolean_details("banner", False, EvaluationContext(None, {"tenant": "x"}))
    nobody = client.get_boolean_details("banner", True, EvaluationContext())

    assert (listed.value, listed.reason, listed.variant) == (True, "TARGETING_MATCH", "yellow")
    assert listed.flag_metadata["version"] == len(FLAGS)
    assert (split.value, split.reason) == (True, "SPLIT")
    assert (nobody.value, nobody.reason, nobody.variant) == (False, "DEFAULT", None)
    assert client.get_string_value("banner", "none", ada) == "yellow"  # no payload: the name
    assert client.get_string_value("greeting", "hi", ada) == "hello"
    assert client.get_integer_value("page-size", 10, ada) == 25
    assert client.get_float_value("ratio", 1.0, ada) == 0.5
    assert client.get_object_value("limits", {}, ada) == {"per_minute": 60}


def test_errors_give_the_default_with_a_code(setup: Setup, connect: type[ConveyorProvider]) -> None:
    client = client_for(connect(setup.url, "production", refresh_interval=0))

    missing = client.get_boolean_details("ghost", True)
    mismatch = client.get_integer_details("greeting", 7)
    fraction = client.get_integer_details("ratio", 7)

    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    assert (mismatch.value, mismatch.error_code) == (7, ErrorCode.TYPE_MISMATCH)
    assert (fraction.value, fraction.error_code) == (7, ErrorCode.TYPE_MISMATCH)


def test_a_kill_is_seen_after_a_refresh(setup: Setup, connect: type[ConveyorProvider]) -> None:
    provider = connect(setup.url, "production", refresh_interval=0)
    client = client_for(provider)
    ada = EvaluationContext(targeting_key="ada")
    assert client.get_boolean_value("banner", False, ada) is True

    setup.ledger.kill("production", "banner")
    before_refresh = client.get_boolean_value("banner", False, ada)
    changed = provider.refresh()
    after = client.get_boolean_details("banner", True, ada)

    assert before_refresh is True  # evaluated locally: no request per evaluation
    assert changed == ["banner"]
    assert (after.value, after.reason) == (False, "DISABLED")
    assert client.get_string_value("banner", "none", ada) == "none"
    assert provider.refresh() == []  # 304: nothing changed


def test_the_refresher_announces_changed_flags(
    setup: Setup, connect: type[ConveyorProvider]
) -> None:
    changes: list[list[str]] = []
    seen = threading.Event()

    def on_change(details: EventDetails) -> None:
        changes.append(details.flags_changed or [])
        seen.set()

    client = client_for(connect(setup.url, "production", refresh_interval=0.05))
    client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    setup.ledger.kill("production", "greeting")

    wait_until(seen.is_set, "a configuration-changed event")
    assert changes[0] == ["greeting"]
    assert client.get_string_value("greeting", "hi") == "hi"


def test_an_unreachable_server_fails_initialisation_then_recovers(
    tmp_path: Path, connect: type[ConveyorProvider]
) -> None:
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        ledger.define("production", FLAGS[1])
        app = create_app(ledger)
        with serving(app) as url:
            port = int(url.rsplit(":", 1)[1])
        # Nothing listens on the port now.
        provider = connect(url, "production", refresh_interval=0.05, timeout=1.0)
        with pytest.raises(Exception, match="cannot fetch flags of production"):
            api.set_provider_and_wait(provider, DOMAIN)
        client = api.get_client(DOMAIN)
        assert client.get_provider_status() is ProviderStatus.ERROR
        assert client.get_string_details("greeting", "hi").error_code is not None

        with serving(app, port):
            wait_until(
                lambda: client.get_provider_status() is ProviderStatus.READY, "provider ready"
            )
            assert client.get_string_value("greeting", "hi") == "hello"


def test_the_targeting_key_is_the_user_id_unless_given() -> None:
    assert context_of(EvaluationContext("ada", {"plan": "beta"})) == {
        "userId": "ada",
        "plan": "beta",
    }
    assert context_of(EvaluationContext("ada", {"userId": "grace"})) == {"userId": "grace"}
    assert context_of(None) == {}
