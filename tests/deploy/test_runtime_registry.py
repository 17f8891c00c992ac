"""Every registered runtime is made from one site, is a `Runtime`, and matches the spec."""

import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.deploy.runtimes.base import Runtime, RuntimeSite
from conveyor.deploy.runtimes.registry import RUNTIMES
from conveyor.errors import ConveyorError
from conveyor.spec.environments import Environment
from conveyor.supply.oci.layout import LayoutStore

KNOWN = r"unknown runtime 'k8s' \(known: kubernetes, podman, process\)"


def test_every_runtime_is_made_under_its_own_name(tmp_path: Path) -> None:
    site = RuntimeSite(root=tmp_path / "runtime", images=LayoutStore(tmp_path / "images"))
    for name in RUNTIMES.names:
        runtime = RUNTIMES.create(name, site)
        assert isinstance(runtime, Runtime)
        assert runtime.name == name


def test_the_spec_allows_exactly_the_registered_runtimes() -> None:
    for name in RUNTIMES.names:
        assert Environment.model_validate({"runtime": name}).runtime == name
    with pytest.raises(ValueError, match=KNOWN):
        Environment.model_validate({"runtime": "k8s"})
    schema = Environment.model_json_schema()["properties"]["runtime"]
    assert schema["enum"] == list(RUNTIMES.names)


def test_an_unknown_runtime_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError, match=KNOWN):
        RUNTIMES.factory("k8s")


def test_the_registries_load_no_backend_until_asked() -> None:
    """`conveyor run` must not pay for deploy backends: the tables alone import none."""
    code = (
        "import sys, conveyor.deploy.runtimes.registry, conveyor.deploy.routers.registry,"
        " conveyor.analysis.providers.registry, conveyor.deploy.strategies\n"
        "print(sorted(m for m in sys.modules if m.startswith('conveyor.')))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "'conveyor.backends'" in shown  # the tables did load
    for backend in (
        "runtimes.process",
        "runtimes.podman",
        "routers.builtin",
        "routers.haproxy",
        "router_metrics",
        "canary",
        "rolling",
        "direct",
    ):
        assert f"conveyor.deploy.{backend}'" not in shown
    assert "conveyor.analysis.providers.prometheus'" not in shown
