"""Every registered router is made from one site, is a `Router`, and matches the spec."""

from pathlib import Path

import pytest

from conveyor.deploy.routers.base import Router, RouterSite
from conveyor.deploy.routers.registry import ROUTERS
from conveyor.errors import ConveyorError
from conveyor.spec.environments import Environment


def test_every_router_is_made_under_its_own_name(tmp_path: Path) -> None:
    site = RouterSite(folder=tmp_path, port=1, admin_port=2)  # made, never started
    for name in ROUTERS.names:
        router = ROUTERS.create(name, site)
        assert isinstance(router, Router)
        assert router.name == name


def test_the_spec_allows_exactly_the_registered_routers() -> None:
    for name in ROUTERS.names:
        assert Environment.model_validate({"router": name}).router == name
    with pytest.raises(ValueError, match=r"unknown router 'envoy' \(known: builtin, haproxy\)"):
        Environment.model_validate({"router": "envoy"})
    schema = Environment.model_json_schema()["properties"]["router"]
    assert schema["enum"] == list(ROUTERS.names)


def test_an_unknown_router_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConveyorError, match=r"unknown router 'envoy' \(known: builtin, haproxy\)"):
        ROUTERS.factory("envoy")
