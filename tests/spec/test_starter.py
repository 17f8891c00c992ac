from pathlib import Path

import pytest

from conveyor.spec.detect import detect
from conveyor.spec.loader import LoadedPipeline, parse_pipeline
from conveyor.spec.starter import flow, render, render_minimal, scalar
from conveyor.steps.build_image import BuildImageParams
from conveyor.steps.registry import STEP_PARAMS
from conveyor.steps.testing import TestParams
from fixture_apps import FASTAPI_TODO, FLASK_NOTES, copy_app

DELIVERY = ["lint", "sast", "secrets", "test", "image", "scan-image", "sign"]


def _generated(name: str, tmp_path: Path) -> LoadedPipeline:
    app = copy_app(name, tmp_path)
    return parse_pipeline(render(detect(app), app), "conveyor.yml", steps=STEP_PARAMS)


def test_a_flask_app_gets_gunicorn_its_init_db_hook_and_a_canary(tmp_path: Path) -> None:
    loaded = _generated(FLASK_NOTES, tmp_path)
    pipeline = loaded.pipeline

    assert list(pipeline.jobs) == [*DELIVERY, "deploy-staging", "deploy-production"]
    image = loaded.step_params["image"]
    assert isinstance(image, BuildImageParams)
    assert image.entrypoint == [
        "python",
        "-m",
        "gunicorn",
        "-b",
        "$(HOST):$(PORT)",
        "notes:create_app()",
    ]
    assert image.packages == ["gunicorn>=22"]  # the app does not depend on it
    assert image.requirements is None  # pyproject.toml's dependencies
    assert image.port == 8000
    tests = loaded.step_params["test"]
    assert isinstance(tests, TestParams) and tests.venv is not None
    assert (tests.venv.dependencies, tests.venv.extras) == (["pyproject.toml"], ["test"])
    assert tests.source == ["notes"] and tests.measures_coverage
    staging, production = pipeline.environments["staging"], pipeline.environments["production"]
    for environment in (staging, production):
        assert environment.env == {"FLASK_DATABASE": "/data/notes.sqlite"}
        assert environment.secrets == ["FLASK_SECRET_KEY"]
        (hook,) = environment.hooks.before_traffic
        assert hook.command == ["python", "-m", "flask", "--app", "notes", "init-db"]
        assert [check.http for check in environment.smoke] == ["/"]
    assert production.after == "staging"
    assert production.approval is not None and production.approval.roles == ["reviewer"]
    assert production.strategy is not None and production.strategy.canary is not None


def test_a_fastapi_app_gets_uvicorn_and_its_health_route(tmp_path: Path) -> None:
    loaded = _generated(FASTAPI_TODO, tmp_path)

    image = loaded.step_params["image"]
    assert isinstance(image, BuildImageParams)
    assert image.entrypoint == [
        "python", "-m", "uvicorn", "todo.main:app", "--host", "$(HOST)", "--port", "$(PORT)"
    ]  # fmt: skip
    assert image.packages == []  # requirements.txt names uvicorn
    assert image.requirements == "requirements.txt"
    tests = loaded.step_params["test"]
    assert isinstance(tests, TestParams) and tests.venv is not None
    assert tests.venv.dependencies == ["requirements.txt", "requirements-dev.txt"]
    staging = loaded.pipeline.environments["staging"]
    assert staging.health.readiness.path == "/health"
    assert staging.env == {"TODO_DB": "/data/todo.db"}
    assert staging.hooks.before_traffic == []
    assert [check.http for check in staging.smoke] == ["/health", "/items"]


def test_a_folder_without_an_app_gets_the_gates_and_the_reasons(tmp_path: Path) -> None:
    text = render(detect(tmp_path), tmp_path)

    loaded = parse_pipeline(text, "conveyor.yml", steps=STEP_PARAMS)
    assert list(loaded.pipeline.jobs) == ["lint", "sast", "secrets"]
    assert loaded.pipeline.environments == {}
    assert "#   - no web framework" in text
    assert text == render_minimal(detect(tmp_path), tmp_path)


def test_values_from_the_folder_are_quoted_when_yaml_would_misread_them() -> None:
    assert scalar("notes") == "notes"
    assert scalar("yes") == '"yes"'
    assert scalar("8000") == '"8000"'
    assert scalar("a: b") == '"a: b"'
    assert scalar("x\ny") == '"x\\ny"'
    assert flow(["python", "-m", "no:cache"]) == '[python, -m, "no:cache"]'


def test_a_library_with_tests_gets_the_gates_and_its_tests(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "textkit"\ndependencies = []\n'
        '[project.optional-dependencies]\ntest = ["pytest"]\n'
    )
    (tmp_path / "textkit").mkdir()
    (tmp_path / "textkit" / "__init__.py").write_text("")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_words.py").write_text("def test_words():\n    pass\n")

    loaded = parse_pipeline(render(detect(tmp_path), tmp_path), "c.yml", steps=STEP_PARAMS)

    assert list(loaded.pipeline.jobs) == ["lint", "sast", "secrets", "test"]
    tests = loaded.step_params["test"]
    assert isinstance(tests, TestParams) and tests.venv is not None
    assert (tests.source, tests.venv.extras) == (["textkit"], ["test"])


@pytest.mark.parametrize("name", [FLASK_NOTES, FASTAPI_TODO])
def test_generation_is_deterministic(tmp_path: Path, name: str) -> None:
    app = copy_app(name, tmp_path)

    assert render(detect(app), app) == render(detect(app), app)


def test_a_src_layout_is_served_and_tested_from_src(tmp_path: Path) -> None:
    (tmp_path / "src" / "shop").mkdir(parents=True)
    (tmp_path / "src" / "shop" / "__init__.py").write_text("")
    (tmp_path / "src" / "shop" / "api.py").write_text(
        "from fastapi import FastAPI\napp = FastAPI()\n"
        "@app.get('/healthz')\ndef h():\n    return {}\n"
    )
    (tmp_path / "requirements.txt").write_text("fastapi==0.115.6\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_api.py").write_text("def test_api():\n    pass\n")

    loaded = parse_pipeline(render(detect(tmp_path), tmp_path), "c.yml", steps=STEP_PARAMS)

    image = loaded.step_params["image"]
    assert isinstance(image, BuildImageParams)
    assert image.entrypoint is not None
    assert image.entrypoint[3:6] == ["shop.api:app", "--app-dir", "src"]
    assert image.packages == ["uvicorn>=0.30"]  # requirements.txt does not name it
    assert image.app == ["src/**", "requirements.txt"]
    tests = loaded.step_params["test"]
    assert isinstance(tests, TestParams) and tests.venv is not None
    assert tests.venv.pythonpath == ["src"] and tests.source == ["src"]
