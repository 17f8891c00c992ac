"""Apply rendered objects through the official Kubernetes client, and read a Rollout back.

Each object goes by server-side apply: a PATCH with `application/apply-patch+yaml`,
`fieldManager=conveyor` and `force=true` (Conveyor owns the fields it renders; the
Gateway API plugin owns the HTTPRoute's weights once it moves them, and a forced apply
sets them back to the rendered stable 100 / canary 0 only when Conveyor applies again).
The API server validates what it receives: its refusal (422, a `Status` whose causes
name the fields) becomes one ConveyorError naming the object and each field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from conveyor.errors import ConveyorError, InfrastructureError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from conveyor.deploy.kubernetes.render import Manifest

FIELD_MANAGER = "conveyor"
APPLY_PATCH = "application/apply-patch+yaml"
# The custom resources Conveyor renders: (apiVersion, kind) -> plural.
PLURALS = {
    ("argoproj.io/v1alpha1", "Rollout"): "rollouts",
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): "analysistemplates",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproutes",
}


@dataclass(frozen=True)
class RolloutStatus:
    """What Argo Rollouts says of a Rollout (its `status`)."""

    name: str
    phase: str  # Healthy, Progressing, Paused, Degraded; "" before the controller saw it
    message: str
    current_step_index: int | None
    steps: int
    canary_weight: int | None  # the traffic router's weight of the canary
    stable_hash: str | None
    current_hash: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "message": self.message,
            "current_step_index": self.current_step_index,
            "steps": self.steps,
            "canary_weight": self.canary_weight,
            "stable_hash": self.stable_hash,
            "current_hash": self.current_hash,
        }


def connect(kubeconfig: str | None, context: str | None) -> ApiClient:
    """A client from a kubeconfig (default ~/.kube/config) and context (default current)."""
    from kubernetes import config

    try:
        made = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
        return cast("ApiClient", made)
    except (config.ConfigException, OSError) as error:
        raise ConveyorError(
            f"cannot read the kubeconfig{f' {kubeconfig}' if kubeconfig else ''}: {error}",
            hint="set environments.<name>.kubernetes.kubeconfig and context, or KUBECONFIG",
        ) from None


def apply_all(client: ApiClient, manifests: Sequence[Manifest]) -> list[dict[str, Any]]:
    """Apply each object in order; the objects as the server answered them."""
    return [apply_one(client, manifest) for manifest in manifests]


def apply_one(client: ApiClient, manifest: Manifest) -> dict[str, Any]:
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    kind, name = manifest["kind"], manifest["metadata"]["name"]
    namespace = manifest["metadata"]["namespace"]
    try:
        if (manifest["apiVersion"], kind) == ("v1", "Service"):
            # Not the client's model: the object as the server sent it, as for the others.
            answer = CoreV1Api(client).patch_namespaced_service(
                name,
                namespace,
                manifest,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type=APPLY_PATCH,
                _preload_content=False,
            )
            return cast(dict[str, Any], json.loads(cast(Any, answer).data))
        group, version, plural = _custom(manifest)
        answered = CustomObjectsApi(client).patch_namespaced_custom_object(
            group,
            version,
            namespace,
            plural,
            name,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )
        return cast(dict[str, Any], answered)
    except Exception as error:  # the client's ApiException, or the connection's
        raise _refused(f"{kind}/{name}", error) from None


def _custom(manifest: Manifest) -> tuple[str, str, str]:
    key = (manifest["apiVersion"], manifest["kind"])
    plural = PLURALS.get(key)
    if plural is None:
        raise ConveyorError(f"Conveyor does not apply {key[1]} ({key[0]})")
    group, _, version = key[0].partition("/")
    return group, version, plural


def rollout_status(client: ApiClient, namespace: str, name: str) -> RolloutStatus:
    """The Rollout's `status` as Argo Rollouts last wrote it."""
    from kubernetes.client import CustomObjectsApi

    try:
        rollout = cast(
            dict[str, Any],
            CustomObjectsApi(client).get_namespaced_custom_object_status(
                "argoproj.io", "v1alpha1", namespace, "rollouts", name
            ),
        )
    except Exception as error:
        raise _refused(f"Rollout/{name}", error) from None
    return parse_status(rollout)


def parse_status(rollout: dict[str, Any]) -> RolloutStatus:
    status = rollout.get("status") or {}
    canary = rollout.get("spec", {}).get("strategy", {}).get("canary") or {}
    weights = (status.get("canary") or {}).get("weights") or {}
    weight = (weights.get("canary") or {}).get("weight")
    index = status.get("currentStepIndex")
    return RolloutStatus(
        name=str(rollout.get("metadata", {}).get("name", "")),
        phase=str(status.get("phase", "")),
        message=str(status.get("message", "")),
        current_step_index=int(index) if index is not None else None,
        steps=len(canary.get("steps") or []),
        canary_weight=int(weight) if weight is not None else None,
        stable_hash=status.get("stableRS"),
        current_hash=status.get("currentPodHash"),
    )


def _refused(what: str, error: Exception) -> ConveyorError:
    """One clear error from what the client raised: the server's Status when it sent one."""
    from kubernetes.client.exceptions import ApiException

    if not isinstance(error, ApiException):
        if isinstance(error, ConveyorError):
            return error
        return InfrastructureError(f"{what}: the Kubernetes API is unreachable: {error}")
    status = _status_body(error.body)
    message = status.get("message") or error.reason or "no message"
    causes = (status.get("details") or {}).get("causes") or []
    fields = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in causes)
    text = f"{what}: the API server refused it ({error.status} {status.get('reason', '')}): "
    text += fields or str(message)
    hints = {
        401: "the kubeconfig's credentials were refused",
        403: "the kubeconfig's user may not apply this kind in this namespace",
        404: "is the CRD installed (Argo Rollouts, Gateway API)? docs/kubernetes.md",
        422: "the manifest breaks the kind's schema",
    }
    return ConveyorError(text, hint=hints.get(int(error.status or 0), "docs/kubernetes.md"))


def _status_body(body: object) -> dict[str, Any]:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(str(body)) if body else {}
    except ValueError:
        return {"message": str(body)[:300]}
    return parsed if isinstance(parsed, dict) else {}
