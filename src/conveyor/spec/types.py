"""Annotated value types shared by the spec's models."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    ValidationInfo,
    WithJsonSchema,
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
