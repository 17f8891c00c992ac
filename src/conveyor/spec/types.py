"""Annotated value types shared by the spec's models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
)

from conveyor.backends import (
    FORGE_FACTORIES,
    PROVIDER_FACTORIES,
    ROUTER_FACTORIES,
    RUNTIME_FACTORIES,
)
from conveyor.spec.durations import DURATION_PATTERN, parse_duration

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda seconds: seconds, return_type=float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "A duration: 30s, 10m, 1h30m, 500ms or a number of seconds.",
        }
    ),
]


def _inside_workspace(value: str, info: ValidationInfo) -> str:
    """A path a job reads or writes must stay in its workspace: relative, no `..`."""
    if value.startswith("/") or ".." in value.split("/"):
        raise ValueError(f"{info.field_name} must be a path inside the workspace")
    return value


WorkspacePath = Annotated[str, AfterValidator(_inside_workspace)]


def _registered(kind: str, factories: Mapping[str, str]) -> Callable[[str], str]:
    """A check that a name is in a backend table of conveyor/backends.py."""

    def check(name: str) -> str:
        if name not in factories:
            raise ValueError(f"unknown {kind} {name!r} (known: {', '.join(sorted(factories))})")
        return name

    return check


def _names_schema(factories: Mapping[str, str]) -> dict[str, Any]:
    return {"type": "string", "enum": sorted(factories)}


# Backend names come from the registry tables, so a new backend needs no spec edit.
RuntimeName = Annotated[
    str,
    AfterValidator(_registered("runtime", RUNTIME_FACTORIES)),
    WithJsonSchema(_names_schema(RUNTIME_FACTORIES)),
]
RouterName = Annotated[
    str,
    AfterValidator(_registered("router", ROUTER_FACTORIES)),
    WithJsonSchema(_names_schema(ROUTER_FACTORIES)),
]
ProviderName = Annotated[
    str,
    AfterValidator(_registered("metrics provider", PROVIDER_FACTORIES)),
    WithJsonSchema(_names_schema(PROVIDER_FACTORIES)),
]
ForgeName = Annotated[
    str,
    AfterValidator(_registered("forge", FORGE_FACTORIES)),
    WithJsonSchema(_names_schema(FORGE_FACTORIES)),
]
