"""Validate rendered Kubernetes manifests as an API server would read them, with no server.

Core kinds (Service) against the Kubernetes OpenAPI schemas that `kubernetes-validate`
ships (strict: an unknown field is an error). Custom resources (Rollout,
AnalysisTemplate, HTTPRoute) against the `openAPIV3Schema` of their CRDs, shipped under
tests/data/kubernetes/ with their licences (README there gives the versions). The CRD
schemas are made strict the way kubeconform does it: an object schema that lists its
properties, and does not say it keeps unknown fields, gets `additionalProperties: false`
(an API server would silently prune a misspelt field; here it is an error).
Not checked here: the CRDs' CEL rules (`x-kubernetes-validations`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import yaml

from conveyor.errors import ConveyorError

CRD_DIR = Path(__file__).parent / "data" / "kubernetes"
CRD_FILES = (
    "argo-rollouts/rollout-crd.yaml",
    "argo-rollouts/analysis-template-crd.yaml",
    "gateway-api/httproutes.yaml",
)
KUBERNETES_VERSION = "1.33.0"  # the schemas of this release of Kubernetes


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of every served version of each CRD."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for relative in CRD_FILES:
        crd = yaml.safe_load((CRD_DIR / relative).read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        for value in schema.values():
            strict(value)
        keeps = schema.get("x-kubernetes-preserve-unknown-fields")
        if "properties" in schema and "additionalProperties" not in schema and not keeps:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        for item in schema:
            strict(item)
    return schema


def validate(manifest: dict[str, Any]) -> None:
    """Raise ConveyorError naming the object and the field path of the first problem."""
    api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
    name = f"{kind}/{manifest.get('metadata', {}).get('name', '?')}"
    schema = crd_schemas().get((api_version, kind))
    try:
        if schema is None:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        else:
            jsonschema.Draft7Validator(schema).validate(manifest)
    except jsonschema.ValidationError as error:
        where = ".".join(str(part) for part in error.absolute_path) or "(the object)"
        raise ConveyorError(
            f"{name} ({api_version}): {where}: {error.message}",
            hint="the schema of this kind rejects the manifest",
        ) from None
    except kubernetes_validate.utils.SchemaNotFoundError as error:
        raise ConveyorError(f"{name}: no schema for {api_version} {kind}: {error}") from None


def validate_all(manifests: list[dict[str, Any]]) -> Iterator[str]:
    """Validate each; yield `Kind/name` of each valid one."""
    for manifest in manifests:
        validate(manifest)
        yield f"{manifest['kind']}/{manifest['metadata']['name']}"
