"""The Kubernetes objects of a release: rendered from conveyor.yml, valid against the
Kubernetes, Argo Rollouts and Gateway API schemas, and never for an unadmitted image."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import run_cli
from conveyor.deploy.kubernetes.render import KubeRelease, Manifest, render
from conveyor.errors import ConveyorError
from conveyor.spec.environments import Environment
from conveyor.supply.oci import model
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.policy import AdmissionDecision, Check, CheckName
from kube_schemas import validate, validate_all

SHOP = Path(__file__).parents[2] / "examples" / "shop" / "conveyor.yml"
DIGEST = "sha256:" + "3c" * 32
ADMITTED = AdmissionDecision(True, [Check(CheckName.SIGNATURE, True, "signed")])


def shop_release(environment: str, admission: AdmissionDecision | None = ADMITTED) -> KubeRelease:
    spec = yaml.safe_load(SHOP.read_text())["environments"][environment]
    return release_of(environment, spec, admission)


def release_of(
    environment: str, spec: dict[str, Any], admission: AdmissionDecision | None = ADMITTED
) -> KubeRelease:
    return KubeRelease(
        project="shop",
        environment=environment,
        spec=Environment.model_validate(spec),
        repository="shop",
        digest=DIGEST,
        release_id=f"{environment}-shop-3c3c3c3c3c3c",
        admission=admission,
    )


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_the_shops_environments_render_objects_every_schema_accepts(environment: str) -> None:
    manifests = render(shop_release(environment))
    names = list(validate_all(manifests))
    kinds = sorted({name.split("/")[0] for name in names})
    assert kinds == (
        ["AnalysisTemplate", "HTTPRoute", "Rollout", "Service"]
        if environment == "production"
        else ["HTTPRoute", "Rollout", "Service"]
    )
    (rollout,) = by_kind(manifests, "Rollout")
    container = rollout["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"localhost:5000/shop@{DIGEST}"
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert rollout["spec"]["replicas"] == 2
    labels = rollout["spec"]["template"]["metadata"]["labels"]
    assert labels["conveyor.dev/release"] == f"{environment}-shop-3c3c3c3c3c3c"


def test_the_production_canary_becomes_argo_steps_judged_by_conveyor() -> None:
    manifests = render(shop_release("production"))
    (rollout,) = by_kind(manifests, "Rollout")
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["trafficRouting"] == {
        "plugins": {
            "argoproj-labs/gatewayAPI": {"httpRoute": "shop-production", "namespace": "default"}
        }
    }
    steps = canary["steps"]
    assert [next(iter(s)) for s in steps] == ["setWeight", "analysis", "setWeight", "analysis"]
    assert (steps[0]["setWeight"], steps[2]["setWeight"]) == (20, 50)
    assert steps[1]["analysis"]["templates"] == [{"templateName": "shop-production-judge-1"}]
    assert steps[1]["analysis"]["args"] == [
        {"name": "release", "value": "production-shop-3c3c3c3c3c3c"}
    ]
    templates = {t["metadata"]["name"]: t for t in by_kind(manifests, "AnalysisTemplate")}
    # The second analysis step overrides max_duration (8s): fewer measurements.
    counts = {n: t["spec"]["metrics"][0]["count"] for n, t in templates.items()}
    assert counts == {"shop-production-judge-1": 16, "shop-production-judge-3": 9}
    metric = templates["shop-production-judge-1"]["spec"]["metrics"][0]
    assert metric["successCondition"] == 'result == "promote"'
    assert metric["failureCondition"] == 'result == "rollback"'
    assert metric["provider"]["web"]["url"] == (
        "http://conveyor.conveyor.svc:8080/api/v1/environments/production/judge"
        "?release={{args.release}}"
    )
    (route,) = by_kind(manifests, "HTTPRoute")
    pin, weighted = route["spec"]["rules"]
    assert pin["matches"][0]["headers"][0]["name"] == "X-Conveyor-Version"
    assert [(b["name"], b["weight"]) for b in weighted["backendRefs"]] == [
        ("shop-production-stable", 100),
        ("shop-production-canary", 0),
    ]


def test_blue_green_and_an_ab_test_render_valid_objects() -> None:
    green = {
        "replicas": 3,
        "secrets": ["DB_URL"],
        "kubernetes": {"namespace": "shop", "gateway": "public", "hostnames": ["shop.example"]},
        "strategy": {"blue_green": {"preview_duration": "30s", "bake": "2m", "analysis": {}}},
    }
    manifests = render(release_of("production", green))
    list(validate_all(manifests))
    (rollout,) = by_kind(manifests, "Rollout")
    blue_green = rollout["spec"]["strategy"]["blueGreen"]
    assert blue_green["activeService"] == "shop-production-stable"
    assert blue_green["previewService"] == "shop-production-canary"
    assert (blue_green["autoPromotionSeconds"], blue_green["scaleDownDelaySeconds"]) == (30, 120)
    env = rollout["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "DB_URL",
        "valueFrom": {"secretKeyRef": {"name": "shop-production-secrets", "key": "DB_URL"}},
    } in env

    ab = {"strategy": {"ab": {"cookie": "beta", "value": "yes"}}}
    manifests = render(release_of("production", ab))
    list(validate_all(manifests))
    (route,) = by_kind(manifests, "HTTPRoute")
    cookie = route["spec"]["rules"][1]["matches"][0]["headers"][0]
    assert (cookie["type"], cookie["name"]) == ("RegularExpression", "Cookie")
    (rollout,) = by_kind(manifests, "Rollout")
    assert rollout["spec"]["strategy"]["canary"]["steps"] == [{"pause": {}}]


def test_an_image_the_admission_policy_refuses_gets_no_manifest() -> None:
    refused = AdmissionDecision(
        False, [Check(CheckName.SIGNATURE, False, "no attestation is attached to the image")]
    )
    with pytest.raises(ConveyorError, match=r"admission refused shop@sha256:3c3c.*no attestation"):
        render(shop_release("production", refused))


@pytest.mark.parametrize(
    ("kind", "change", "where"),
    [
        (
            "Rollout",
            ("strategy", "canary", "steps", 0, "setWeight", "twenty"),
            "spec.strategy.canary.steps.0.setWeight",
        ),
        ("HTTPRoute", ("rules", 1, "backendRefs", 0, "wieght", 5), "spec.rules.1.backendRefs.0"),
        (
            "AnalysisTemplate",
            ("metrics", 0, "provider", "web", "timeoutSeconds", "ten"),
            "spec.metrics.0.provider.web.timeoutSeconds",
        ),
        ("Service", ("ports", 0, "port", "eighty"), "spec.ports.0.port"),
    ],
    ids=["rollout-weight", "route-misspelt-field", "template-timeout", "service-port"],
)
def test_a_manifest_the_schema_rejects_names_the_object_and_the_field(
    kind: str, change: tuple[Any, ...], where: str
) -> None:
    manifest = copy.deepcopy(by_kind(render(shop_release("production")), kind)[0])
    target: Any = manifest["spec"]
    *path, key, value = change
    for part in path:
        target = target[part]
    target[key] = value
    with pytest.raises(ConveyorError) as raised:
        validate(manifest)
    assert f"{kind}/{manifest['metadata']['name']}" in raised.value.message
    assert where in raised.value.message


def put_image(project: Path) -> str:
    store = LayoutStore(project / ".conveyor" / "images")
    layer = store.put_blob("shop", b"layer")
    config = model.canonical_json({"architecture": "amd64", "os": "linux"})
    store.put_blob("shop", config)
    manifest = model.Manifest(
        model.Descriptor.of(model.CONFIG, config),
        (model.Descriptor(model.LAYER_TAR_GZIP, layer, 5),),
    )
    return store.put_manifest("shop", manifest.to_bytes(), model.MANIFEST, ("v1",))


def test_the_cli_renders_yaml_and_refuses_an_unadmitted_image(tmp_path: Path) -> None:
    shop = yaml.safe_load(SHOP.read_text())
    (tmp_path / "conveyor.yml").write_text(yaml.safe_dump(shop))
    digest = put_image(tmp_path)
    refused = run_cli(["k8s", "render", "production", f"shop@{digest}"], tmp_path)
    assert refused.exit_code != 0
    assert "admission refused" in refused.stderr + refused.stdout
    assert "apiVersion" not in refused.stdout

    del shop["images"]["admission"]  # no policy: nothing to enforce, as `conveyor deploy`
    (tmp_path / "conveyor.yml").write_text(yaml.safe_dump(shop))
    shown = run_cli(["k8s", "render", "production", "shop:v1"], tmp_path)
    assert shown.exit_code == 0, shown.stderr
    manifests = list(yaml.safe_load_all(shown.stdout))
    assert len(list(validate_all(manifests))) == 6
    listed = run_cli(["k8s", "render", "staging", "shop:v1", "-o", "json"], tmp_path)
    assert [i["kind"] for i in listed.json()["items"]] == [
        "Service",
        "Service",
        "HTTPRoute",
        "Rollout",
    ]


def test_an_unknown_environment_and_the_runtimes_own_controller_paths_are_clear(
    tmp_path: Path,
) -> None:
    (tmp_path / "conveyor.yml").write_text(SHOP.read_text())
    unknown = run_cli(["k8s", "render", "nowhere", "shop:v1"], tmp_path)
    assert unknown.exit_code == 4 and "no environment 'nowhere'" in unknown.stderr
    from conveyor.deploy.kubernetes.runtime import KubernetesRuntime
    from conveyor.deploy.runtimes.base import RuntimeSite

    runtime = KubernetesRuntime(RuntimeSite(tmp_path, LayoutStore(tmp_path / "images")))
    with pytest.raises(ConveyorError, match="released by Argo Rollouts") as raised:
        runtime.status("production-shop-3c3c3c3c3c3c")
    assert "conveyor k8s render" in str(raised.value.hint)
