"""The Kubernetes objects of one environment's release, rendered from conveyor.yml (pure).

Argo Rollouts runs the release; Conveyor renders what it needs and judges it:
- a `Rollout` (argoproj.io/v1alpha1): canary steps from the strategy (setWeight, pause,
  analysis), traffic through the Gateway API plugin (`argoproj-labs/gatewayAPI`), or a
  blue-green with active and preview Services;
- the `stable` and `canary` Services (blue-green: active and preview);
- an `HTTPRoute` (gateway.networking.k8s.io/v1): the weighted rule the plugin moves, and
  header rules in front of it, for pinning a version and for an A/B test;
- an `AnalysisTemplate` per analysis step whose `web` metric asks Conveyor's judge
  (`GET <judge_url>/api/v1/environments/<env>/judge?release=<id>`, server/api/judge.py).

The image is set only for an admitted digest: `render` refuses any other.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.spec.environments import Environment, Probe
from conveyor.spec.kubernetes import KubernetesSettings
from conveyor.spec.strategy import Analysis, Canary, CanaryStep, Strategy, merged
from conveyor.supply.policy import AdmissionDecision

Manifest = dict[str, Any]

ROLLOUTS_API = "argoproj.io/v1alpha1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"
PIN_HEADER = "X-Conveyor-Version"  # the builtin router's pin header (deploy/model.py)
STABLE_VERSION, CANARY_VERSION = "stable", "canary"
TOKEN_KEY = "token"  # noqa: S105 (the key of the judge's Secret, not a value)


@dataclass(frozen=True)
class KubeRelease:
    """What one release's objects are rendered from."""

    project: str  # conveyor.yml's `name`
    environment: str
    spec: Environment
    repository: str
    digest: str  # sha256:...
    release_id: str  # as the judge records it (deploy/rollout.py release_name)
    # The admission policy's verdict on the digest; None: conveyor.yml sets no policy.
    admission: AdmissionDecision | None

    @property
    def settings(self) -> KubernetesSettings:
        return self.spec.kubernetes

    @property
    def name(self) -> str:
        return object_name(f"{self.project}-{self.environment}")

    @property
    def image(self) -> str:
        return f"{self.settings.registry}/{self.repository}@{self.digest}"


def object_name(text: str) -> str:
    """A DNS-1123 label from `text` (lower case, `-` for anything else, 53 characters at
    most so that `-canary` and Argo's hash suffixes still fit)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:53].rstrip("-")
    if not name:
        raise ConveyorError(f"{text!r} gives no Kubernetes object name")
    return name


def render(release: KubeRelease) -> list[Manifest]:
    """Every object of `release`, in the order they are applied (what a Rollout refers to
    comes first)."""
    check_admitted(release)
    strategy = release.spec.strategy
    objects = [_service(release, STABLE_VERSION), _service(release, CANARY_VERSION)]
    objects += _analysis_templates(release)
    objects.append(_http_route(release))
    objects.append(_rollout(release, strategy))
    return objects


def check_admitted(release: KubeRelease) -> None:
    decision = release.admission
    if decision is None or decision.admitted:
        return
    reasons = "; ".join(f"{check.name}: {check.detail}" for check in decision.failed)
    raise ConveyorError(
        f"admission refused {release.repository}@{release.digest[:19]}: {reasons}; "
        f"no manifest sets this image",
        hint=f"`conveyor image verify {release.repository}@{release.digest}` shows every check",
    )


# --- metadata ---------------------------------------------------------------------------


def _labels(release: KubeRelease) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": object_name(release.project),
        "app.kubernetes.io/instance": release.name,
        "app.kubernetes.io/managed-by": "conveyor",
        "conveyor.dev/environment": release.environment,
    }


def _metadata(release: KubeRelease, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": release.settings.namespace, "labels": _labels(release)}


def _selector(release: KubeRelease) -> dict[str, str]:
    return {"app.kubernetes.io/instance": release.name}


def service_name(release: KubeRelease, version: str) -> str:
    return f"{release.name}-{version}"


# --- Services -------------------------------------------------------------------------


def _service(release: KubeRelease, version: str) -> Manifest:
    """Argo Rollouts adds the pod-template hash to the selector of each Service it is
    told about, so `canary` reaches the new pods only, `stable` the old ones."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(release, service_name(release, version)),
        "spec": {
            "selector": _selector(release),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


# --- the Rollout ----------------------------------------------------------------------


def _rollout(release: KubeRelease, strategy: Strategy | None) -> Manifest:
    return {
        "apiVersion": ROLLOUTS_API,
        "kind": "Rollout",
        "metadata": _metadata(release, release.name),
        "spec": {
            "replicas": release.spec.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": _selector(release)},
            "template": _pod_template(release),
            "strategy": _strategy(release, strategy),
        },
    }


def _pod_template(release: KubeRelease) -> dict[str, Any]:
    spec = release.spec
    port = release.settings.container_port
    container: dict[str, Any] = {
        "name": "app",
        "image": release.image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _container_env(release),
        "readinessProbe": _probe(spec.health.readiness),
        "livenessProbe": _probe(spec.health.liveness),
    }
    return {
        "metadata": {
            "labels": _labels(release) | _release_label(release),
            "annotations": {
                "conveyor.dev/release": release.release_id,
                "conveyor.dev/digest": release.digest,
            },
        },
        "spec": {
            "containers": [container],
            "terminationGracePeriodSeconds": max(1, math.ceil(spec.drain)) + 5,
        },
    }


def _release_label(release: KubeRelease) -> dict[str, str]:
    """The release id on each pod, for the judge's Prometheus queries to select the canary
    and the stable pods by (`{release}`); left out when it is no valid label value."""
    if re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", release.release_id):
        return {"conveyor.dev/release": release.release_id}
    return {}


def _container_env(release: KubeRelease) -> list[dict[str, Any]]:
    """HOST and PORT as the other runtimes set them, the environment's `env`, and each
    secret from a Secret named `<name>-secrets` (never its value in a manifest)."""
    values = {"HOST": "0.0.0.0", "PORT": str(release.settings.container_port)}  # noqa: S104
    values |= release.spec.env
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    secret = f"{release.name}-secrets"
    env += [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": name}}}
        for name in release.spec.secrets
    ]
    return env


def _probe(probe: Probe) -> dict[str, Any]:
    """Kubernetes counts in whole seconds: sub-second intervals round up to 1 s."""
    check: dict[str, Any] = (
        {"httpGet": {"path": probe.path, "port": "http"}}
        if probe.path
        else {"tcpSocket": {"port": "http"}}
    )
    return check | {
        "periodSeconds": max(1, math.ceil(probe.interval)),
        "timeoutSeconds": max(1, math.ceil(probe.timeout)),
        "failureThreshold": probe.failure_threshold,
    }


def _strategy(release: KubeRelease, strategy: Strategy | None) -> dict[str, Any]:
    if strategy is not None and strategy.blue_green is not None:
        return {"blueGreen": _blue_green(release, strategy)}
    if strategy is None or strategy.rolling is not None:
        rolling = strategy.rolling if strategy else None
        # No strategy: replica by replica, as the `direct` deploy does.
        surge, unavailable = (rolling.max_surge, rolling.max_unavailable) if rolling else (1, 0)
        return {
            "canary": _services_and_route(release)
            | {"maxSurge": surge, "maxUnavailable": unavailable}
        }
    canary = strategy.as_canary()
    body = _services_and_route(release) | {"steps": canary_steps(release, canary)}
    if canary.bake:
        body["scaleDownDelaySeconds"] = math.ceil(canary.bake)
    return {"canary": body}


def _services_and_route(release: KubeRelease) -> dict[str, Any]:
    return {
        "stableService": service_name(release, STABLE_VERSION),
        "canaryService": service_name(release, CANARY_VERSION),
        "trafficRouting": {
            "plugins": {
                GATEWAY_PLUGIN: {
                    "httpRoute": release.name,
                    "namespace": release.settings.namespace,
                }
            }
        },
    }


def canary_steps(release: KubeRelease, canary: Canary) -> list[dict[str, Any]]:
    """conveyor.yml's steps as Argo Rollouts steps: weight -> setWeight, pause -> pause
    (`until-promoted`: an indefinite pause, `kubectl argo rollouts promote`), analysis ->
    an inline analysis asking the judge."""
    steps: list[dict[str, Any]] = []
    for index, step in enumerate(canary.steps):
        steps.append(_step(release, index, step))
    return steps


def _step(release: KubeRelease, index: int, step: CanaryStep) -> dict[str, Any]:
    if step.weight is not None:
        return {"setWeight": step.weight}
    if step.pause == "until-promoted":
        return {"pause": {}}
    if step.pause is not None:
        return {"pause": {"duration": f"{math.ceil(step.pause)}s"}}
    return {"analysis": _analysis_ref(release, index)}


def _analysis_ref(release: KubeRelease, index: int) -> dict[str, Any]:
    return {
        "templates": [{"templateName": analysis_template_name(release, index)}],
        "args": [{"name": "release", "value": release.release_id}],
    }


def _blue_green(release: KubeRelease, strategy: Strategy) -> dict[str, Any]:
    green = strategy.blue_green
    assert green is not None
    body: dict[str, Any] = {
        "activeService": service_name(release, STABLE_VERSION),
        "previewService": service_name(release, CANARY_VERSION),
        "autoPromotionEnabled": True,
        "scaleDownDelaySeconds": math.ceil(green.bake),
    }
    if green.preview_duration:
        body["autoPromotionSeconds"] = math.ceil(green.preview_duration)
    if green.analysis is not None:
        body["postPromotionAnalysis"] = _analysis_ref(release, 0)
    return body


# --- the judge as an AnalysisTemplate -------------------------------------------------


def analysis_template_name(release: KubeRelease, index: int) -> str:
    return f"{release.name}-judge-{index}"


def _analyses(release: KubeRelease) -> list[tuple[int, Analysis]]:
    """(index, settings) of each analysis the Rollout runs."""
    strategy = release.spec.strategy
    if strategy is None or strategy.rolling is not None:
        return []
    if strategy.blue_green is not None:
        green = strategy.blue_green.analysis
        return [(0, green)] if green is not None else []
    canary = strategy.as_canary()
    return [
        (index, merged(canary.analysis, step.analysis))
        for index, step in enumerate(canary.steps)
        if step.analysis is not None
    ]


def _analysis_templates(release: KubeRelease) -> list[Manifest]:
    return [_analysis_template(release, i, a) for i, a in _analyses(release)]


def judge_url(release: KubeRelease) -> str:
    base = release.settings.judge_url.rstrip("/")
    return f"{base}/api/v1/environments/{release.environment}/judge?release={{{{args.release}}}}"


def judge_metric(release: KubeRelease, analysis: Analysis) -> dict[str, Any]:
    """One measurement per judge interval, until the judge promotes (one success ends
    it: consecutiveSuccessLimit 1) or rolls back (failureLimit 0); `hold` counts as
    inconclusive. Past max_duration the run ends inconclusive: Argo pauses the Rollout
    for a person, as `inconclusive: pause` does (the judge itself answers `promote` or
    `rollback` at max_duration when conveyor.yml says so)."""
    interval = max(1, math.ceil(analysis.interval))
    count = math.ceil(analysis.max_duration / interval) + 1
    return {
        "name": "conveyor-judge",
        "interval": f"{interval}s",
        "count": count,
        "successCondition": 'result == "promote"',
        "failureCondition": 'result == "rollback"',
        "failureLimit": 0,
        "inconclusiveLimit": count,
        "consecutiveSuccessLimit": 1,
        "provider": {
            "web": {
                "url": judge_url(release),
                "timeoutSeconds": 10,
                "headers": [
                    {"key": "Authorization", "value": "Bearer {{args.token}}"},
                    {"key": "Accept", "value": "application/json"},
                ],
                "jsonPath": "{$.verdict}",
            }
        },
    }


def _analysis_template(release: KubeRelease, index: int, analysis: Analysis) -> Manifest:
    token = {"secretKeyRef": {"name": release.settings.judge_token_secret, "key": TOKEN_KEY}}
    return {
        "apiVersion": ROLLOUTS_API,
        "kind": "AnalysisTemplate",
        "metadata": _metadata(release, analysis_template_name(release, index)),
        "spec": {
            "args": [{"name": "release"}, {"name": "token", "valueFrom": token}],
            "metrics": [judge_metric(release, analysis)],
        },
    }


# --- the HTTPRoute --------------------------------------------------------------------


def _backend(release: KubeRelease, version: str, weight: int | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"kind": "Service", "name": service_name(release, version), "port": 80}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _http_route(release: KubeRelease) -> Manifest:
    """Header rules first (the more specific match wins in Gateway API; each also names
    its rule): a pinned version, and the A/B test's header or cookie; then the weighted
    rule whose weights the plugin sets. A blue-green's active Service takes it all."""
    settings = release.settings
    parent: dict[str, Any] = {"name": settings.gateway}
    if settings.gateway_namespace:
        parent["namespace"] = settings.gateway_namespace
    rules = [_pin_rule(release)]
    ab = release.spec.strategy.ab if release.spec.strategy else None
    if ab is not None:
        match = (
            {"headers": [{"type": "Exact", "name": ab.header, "value": ab.value}]}
            if ab.header
            else {"headers": [_cookie_match(str(ab.cookie), ab.value)]}
        )
        rules.append({"matches": [match], "backendRefs": [_backend(release, CANARY_VERSION, None)]})
    blue_green = release.spec.strategy is not None and release.spec.strategy.blue_green
    weighted = (
        [_backend(release, STABLE_VERSION, 100)]
        if blue_green
        else [_backend(release, STABLE_VERSION, 100), _backend(release, CANARY_VERSION, 0)]
    )
    rules.append(
        {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "backendRefs": weighted}
    )
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": rules}
    if settings.hostnames:
        spec["hostnames"] = list(settings.hostnames)
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": _metadata(release, release.name),
        "spec": spec,
    }


def _pin_rule(release: KubeRelease) -> dict[str, Any]:
    """`X-Conveyor-Version: canary` reaches the new version whatever the weights: the
    plugin leaves a rule whose one backend is the canary alone. (No rule pins `stable`:
    the plugin would set that rule's weight to 0 at a 100% step.)"""
    match = {"headers": [{"type": "Exact", "name": PIN_HEADER, "value": CANARY_VERSION}]}
    return {"matches": [match], "backendRefs": [_backend(release, CANARY_VERSION, None)]}


def _cookie_match(cookie: str, value: str) -> dict[str, Any]:
    """Gateway API matches headers, not cookies: a regular expression on `Cookie`."""
    pattern = f"(^|.*;\\s*){re.escape(cookie)}={re.escape(value)}(;.*|$)"
    return {"type": "RegularExpression", "name": "Cookie", "value": pattern}
