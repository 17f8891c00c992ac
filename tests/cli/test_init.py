"""`conveyor init` on the fixture apps and on folders it cannot understand."""

from pathlib import Path

import pytest

from conftest import run_cli
from fixture_apps import FASTAPI_TODO, FLASK_NOTES, copy_app


@pytest.mark.parametrize("name", [FLASK_NOTES, FASTAPI_TODO])
def test_the_file_init_writes_for_an_app_passes_lint(tmp_path: Path, name: str) -> None:
    app = copy_app(name, tmp_path)

    written = run_cli(["init"], app)
    linted = run_cli(["lint", "-o", "json"], app)

    assert written.exit_code == 0, written.stderr
    assert "served by" in written.stdout
    assert linted.exit_code == 0, linted.stderr
    assert linted.json()["valid"] is True and linted.json()["jobs"] == 9
    assert (app / ".conveyor" / "keys" / "conveyor.key").is_file()  # for the sign job
    assert (app / ".conveyor" / "keys" / "conveyor.pub").is_file()


def test_explain_names_each_finding_with_its_file_and_line(tmp_path: Path) -> None:
    app = copy_app(FLASK_NOTES, tmp_path)

    result = run_cli(["init", "--explain"], app)

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("notes:create_app()" in line and "notes/__init__.py:8" in line for line in lines)
    assert any("init-db" in line and "notes/db.py:29" in line for line in lines)
    assert any("FLASK_DATABASE=/data/notes.sqlite" in line for line in lines)
    assert any("not detected: no health route" in line for line in lines)


def test_explain_as_json(tmp_path: Path) -> None:
    app = copy_app(FASTAPI_TODO, tmp_path)

    result = run_cli(["init", "--explain", "-o", "json"], app)

    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["complete"] is True and document["not_detected"] == []
    rows = {row["what"]: row for row in document["findings"]}
    assert rows["app"] == {"what": "app", "value": "todo.main:app", "why": rows["app"]["why"]}
    assert rows["health"]["value"] == "/health"
    assert rows["health"]["why"] == "todo/main.py:26: GET /health"


def test_a_folder_it_cannot_understand_gets_a_minimal_file(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("notes\n")

    result = run_cli(["init"], tmp_path)
    linted = run_cli(["lint"], tmp_path)

    assert result.exit_code == 0, result.stderr
    assert "for no Python web app" in result.stdout
    assert "not detected: no web framework" in result.stdout
    assert linted.exit_code == 0, linted.stderr
    assert not (tmp_path / ".conveyor" / "keys").exists()  # nothing is signed


def test_a_broken_pyproject_is_named(tmp_path: Path) -> None:
    app = copy_app(FLASK_NOTES, tmp_path)
    (app / "pyproject.toml").write_text("[project\n")

    result = run_cli(["init"], app)

    assert result.exit_code == 0, result.stderr
    assert "pyproject.toml: not valid TOML" in result.stdout
    assert run_cli(["lint"], app).exit_code == 0


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    app = copy_app(FASTAPI_TODO, tmp_path)
    (app / "conveyor.yml").write_text("version: 1\njobs: {a: {run: make}}\n")

    refused = run_cli(["init"], app)
    kept = (app / "conveyor.yml").read_text()
    forced = run_cli(["init", "--force"], app)

    assert refused.exit_code == 2
    assert "already exists" in refused.stderr and "--force" in refused.stderr
    assert kept == "version: 1\njobs: {a: {run: make}}\n"
    assert forced.exit_code == 0, forced.stderr
    assert "uses: build-image" in (app / "conveyor.yml").read_text()
    assert list(app.glob(".conveyor.yml.*")) == []  # no temporary file left


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app").write_text("")

    result = run_cli(["init", "app"], tmp_path)

    assert result.exit_code == 2
    assert "is not a folder" in result.stderr
