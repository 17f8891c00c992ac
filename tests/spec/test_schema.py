from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from conveyor.spec.detect import detect
from conveyor.spec.locate import parse_yaml
from conveyor.spec.schema import pipeline_json_schema
from conveyor.spec.starter import render
from conveyor.steps.registry import STEP_PARAMS
from fixture_apps import APPS, FASTAPI_TODO, FLASK_NOTES


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = pipeline_json_schema(STEP_PARAMS)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _data(text: str) -> dict[str, Any]:
    return parse_yaml(text, "conveyor.yml").data


def test_schema_identifies_itself() -> None:
    schema = pipeline_json_schema(STEP_PARAMS)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://conveyor.dev/schema/conveyor.schema.json"
    assert schema["title"] == "conveyor.yml"
    assert schema["required"] == ["version", "jobs"]
    assert "with" in schema["$defs"]["Job"]["properties"]


@pytest.mark.parametrize("app", [FLASK_NOTES, FASTAPI_TODO])
def test_the_file_init_writes_is_valid(validator: Any, app: str) -> None:
    text = render(detect(APPS / app), APPS / app)

    assert list(validator.iter_errors(_data(text))) == []


def test_shorthands_the_loader_accepts_are_valid(validator: Any) -> None:
    text = (
        "version: 1\nenv: {CI: true, N: 3}\njobs:\n"
        "  a: {run: make, needs: b, retry: 2, concurrency: prod, timeout: 90, inputs: src/**}\n"
        "  b: {run: [make test]}\n"
    )
    assert list(validator.iter_errors(_data(text))) == []


def test_hooks_with_a_string_or_a_list_command_are_valid(validator: Any) -> None:
    text = (
        "version: 1\njobs:\n  a: {run: make}\nenvironments:\n  staging:\n"
        "    health: {readiness: {interval: 100ms}}\n"
        "    hooks:\n      before_traffic: [{command: flask --app notes init-db, timeout: 2m}]\n"
        "      after_traffic: [{name: warm, command: [warm, up], on_failure: continue}]\n"
    )
    assert list(validator.iter_errors(_data(text))) == []
    unknown = text.replace("on_failure", "on_fail")
    messages = [error.message for error in validator.iter_errors(_data(unknown))]
    assert any("'on_fail' was unexpected" in message for message in messages), messages


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 1\njobs:\n  a: {run: x, runn: y}\n", "'runn' was unexpected"),
        ("version: 1\nbogus: 1\njobs:\n  a: {run: x}\n", "'bogus' was unexpected"),
        ("version: 2\njobs:\n  a: {run: x}\n", "1 was expected"),
        ("version: 1\njobs:\n  a: {run: x, uses: archive}\n", "is valid under each of"),
        ("version: 1\njobs:\n  bad name: {run: x}\n", "does not match any of the regexes"),
        ("version: 1\njobs:\n  a: {uses: archive, with: {pathz: [x]}}\n", "'pathz' was unexpected"),
        ("version: 1\njobs:\n  a: {uses: archiv}\n", "'archiv' is not valid under any"),
        ("version: 1\njobs:\n  a: {run: x, timeout: 10 minutes}\n", "is not valid under any"),
    ],
)
def test_invalid_files_are_rejected(validator: Any, text: str, fragment: str) -> None:
    messages = [error.message for error in validator.iter_errors(_data(text))]
    assert any(fragment in message for message in messages), messages
