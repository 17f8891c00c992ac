"""Applying through the official Kubernetes client, against a stand-in API server that
checks each request's method, path, content type and query and answers recorded JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli
from conveyor.deploy.kubernetes.apply import apply_all, connect, rollout_status
from conveyor.deploy.kubernetes.render import render
from conveyor.errors import ConveyorError
from k8s.recorded_api import Seen, recorded, recorded_api
from k8s.test_render import SHOP, put_image, shop_release


def test_each_object_goes_by_server_side_apply_and_the_rollout_status_reads_back(
    tmp_path: Path,
) -> None:
    manifests = render(shop_release("production"))
    with recorded_api() as api:
        client = connect(str(api.kubeconfig(tmp_path)), "recorded")
        with client:
            answered = apply_all(client, manifests)
            status = rollout_status(client, "default", "shop-production")
    patches = [s for s in api.seen if s.method == "PATCH"]
    assert [s.path for s in patches] == [
        "/api/v1/namespaces/default/services/shop-production-stable",
        "/api/v1/namespaces/default/services/shop-production-canary",
        "/apis/argoproj.io/v1alpha1/namespaces/default/analysistemplates/shop-production-judge-1",
        "/apis/argoproj.io/v1alpha1/namespaces/default/analysistemplates/shop-production-judge-3",
        "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/shop-production",
        "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/shop-production",
    ]
    assert [s.body for s in patches] == manifests  # the whole object, as rendered
    assert all(a["metadata"]["managedFields"][0]["manager"] == "conveyor" for a in answered)
    (read,) = [s for s in api.seen if s.method == "GET"]
    assert (
        read.path == "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/shop-production/status"
    )
    assert (status.phase, status.current_step_index, status.steps) == ("Progressing", 1, 4)
    assert (status.canary_weight, status.stable_hash) == (20, "5c4b7d9f8")


def test_a_manifest_the_api_server_rejects_is_one_error_naming_the_object_and_field(
    tmp_path: Path,
) -> None:
    def refuse_rollouts(seen: Seen) -> tuple[int, Any] | None:
        return (422, recorded("rollout-invalid.json")) if "/rollouts/" in seen.path else None

    with recorded_api() as api:
        api.override = refuse_rollouts
        client = connect(str(api.kubeconfig(tmp_path)), "recorded")
        with client, pytest.raises(ConveyorError) as raised:
            apply_all(client, render(shop_release("production")))
    message = raised.value.message
    assert message.startswith("Rollout/shop-production: the API server refused it (422 Invalid)")
    assert "spec.strategy.canary.steps[0].setWeight" in message
    assert raised.value.hint == "the manifest breaks the kind's schema"


def test_a_missing_crd_and_a_missing_kubeconfig_are_clear_errors(tmp_path: Path) -> None:
    def no_crd(seen: Seen) -> tuple[int, Any] | None:
        if "/apis/" not in seen.path:
            return None
        return 404, {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": "the server could not find the requested resource",
            "reason": "NotFound",
            "code": 404,
        }

    with recorded_api() as api:
        api.override = no_crd
        client = connect(str(api.kubeconfig(tmp_path)), "recorded")
        with client, pytest.raises(ConveyorError) as raised:
            apply_all(client, render(shop_release("production")))
    assert "AnalysisTemplate/shop-production-judge-1" in raised.value.message
    assert "CRD installed" in str(raised.value.hint)
    with pytest.raises(ConveyorError, match="cannot read the kubeconfig"):
        connect(str(tmp_path / "absent"), None)


def test_conveyor_k8s_apply_admits_applies_and_shows_the_rollout(tmp_path: Path) -> None:
    shop = yaml.safe_load(SHOP.read_text())
    del shop["images"]["admission"]
    with recorded_api() as api:
        kubeconfig = api.kubeconfig(tmp_path)
        shop["environments"]["production"]["runtime"] = "kubernetes"
        shop["environments"]["production"]["kubernetes"] = {
            "kubeconfig": str(kubeconfig),
            "context": "recorded",
        }
        (tmp_path / "conveyor.yml").write_text(yaml.safe_dump(shop))
        put_image(tmp_path)
        result = run_cli(["k8s", "apply", "production", "shop:v1", "-o", "json"], tmp_path)
    assert result.exit_code == 0, result.stderr
    shown = result.json()
    assert shown["applied"][-1] == "Rollout/default/shop-production"
    assert shown["rollout"]["canary_weight"] == 20
    assert len([s for s in api.seen if s.method == "PATCH"]) == 6
