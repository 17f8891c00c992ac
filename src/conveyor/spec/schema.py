"""The JSON Schema of `conveyor.yml`, for editors (yaml-language-server) and other tools.

It is generated from the pydantic model, so it cannot drift from what the loader accepts;
each step's parameters are attached to `with` when `uses` names that step (the host
passes its step table, as to the loader).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from conveyor.spec.loader import StepCatalog
from conveyor.spec.model import Pipeline

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://conveyor.dev/schema/conveyor.schema.json"
_DEFS_PREFIX = "#/$defs/"


def pipeline_json_schema(steps: StepCatalog) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(Pipeline, "validation")]
    models += [(model, "validation") for model in steps.values()]
    refs, combined = models_json_schema(models, by_alias=True)
    defs: dict[str, Any] = combined["$defs"]
    root = defs.pop(_def_name(refs[(Pipeline, "validation")]))
    step_refs = {name: refs[(model, "validation")] for name, model in steps.items()}
    _attach_step_params(defs[_job_def_name(root)], step_refs)
    _forbid_unmatched_names(root)
    for definition in defs.values():
        _forbid_unmatched_names(definition)
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "conveyor.yml",
        **{key: value for key, value in root.items() if key != "title"},
        "$defs": defs,
    }


def _def_name(ref: dict[str, Any]) -> str:
    return str(ref["$ref"]).removeprefix(_DEFS_PREFIX)


def _job_def_name(root: dict[str, Any]) -> str:
    job_schemas = root["properties"]["jobs"]["patternProperties"].values()
    return _def_name(next(iter(job_schemas)))


def _attach_step_params(job: dict[str, Any], step_refs: dict[str, dict[str, Any]]) -> None:
    """`with` is free-form in the model; here it follows the step that `uses` names."""
    job["allOf"] = [
        {
            "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
            "then": {"properties": {"with": ref}},
        }
        for name, ref in sorted(step_refs.items())
    ]
    # Editors complete step names from the enum.
    for member in job["properties"]["uses"]["anyOf"]:
        if member.get("type") == "string":
            member["enum"] = sorted(step_refs)


def _forbid_unmatched_names(schema: dict[str, Any]) -> None:
    """Name-patterned maps (jobs, env) reject other names, as the model does."""
    for value in schema.get("properties", {}).values():
        if "patternProperties" in value and "additionalProperties" not in value:
            value["additionalProperties"] = False
