from pathlib import Path

import pytest

from conveyor.spec.detect import detect
from conveyor.spec.detect.model import AppTarget, Clue, DependencyKind, Framework
from fixture_apps import FASTAPI_TODO, FLASK_NOTES, copy_app


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    return copy_app(FLASK_NOTES, tmp_path)


@pytest.fixture
def todo(tmp_path: Path) -> Path:
    return copy_app(FASTAPI_TODO, tmp_path)


def test_a_flask_app_factory_and_what_it_needs(notes: Path) -> None:
    found = detect(notes)

    assert found.name == "notes"
    assert found.framework is Framework.FLASK
    assert found.framework_clue == Clue("notes/__init__.py", 5, "imports flask")
    assert found.app == AppTarget("notes", "create_app", factory=True)
    assert str(found.app) == "notes:create_app()"
    assert found.app_clue is not None
    assert (found.app_clue.file, found.app_clue.line) == ("notes/__init__.py", 8)
    assert found.package is not None and found.package.value == "notes"
    source = found.main_dependencies
    assert source is not None and source.kind is DependencyKind.PYPROJECT
    assert source.names == {"flask"}
    assert found.tests is not None
    assert (found.tests.folder, found.tests.extras, found.tests.requirements) == (
        "tests",
        ("test",),
        (),
    )
    assert found.health is None
    assert found.home is not None and found.home.value == "/"
    assert [(d.variable, d.filename) for d in found.data] == [("FLASK_DATABASE", "notes.sqlite")]
    assert [s.variable for s in found.secrets] == ["FLASK_SECRET_KEY"]
    assert [(t.name, t.command) for t in found.tasks] == [
        ("init-db", ("python", "-m", "flask", "--app", "notes", "init-db"))
    ]
    assert (found.tasks[0].clue.file, found.tasks[0].clue.line) == ("notes/db.py", 29)
    assert any("no health route" in note for note in found.notes)


def test_a_fastapi_app_object_its_health_route_and_requirements(todo: Path) -> None:
    found = detect(todo)

    assert found.framework is Framework.FASTAPI
    assert found.app == AppTarget("todo.main", "app")
    assert found.health is not None and found.health.value == "/health"
    assert (found.health.clue.file, found.health.clue.line) == ("todo/main.py", 26)
    assert found.home is not None and found.home.value == "/items"
    main = found.main_dependencies
    assert main is not None and main.path == "requirements.txt"
    assert main.names == {"fastapi", "uvicorn"}
    assert found.tests is not None and found.tests.requirements == ("requirements-dev.txt",)
    assert [(d.variable, d.filename) for d in found.data] == [("TODO_DB", "todo.db")]
    assert found.tasks == () and found.secrets == ()
    assert found.notes == ()


def test_an_empty_folder_is_understood_as_nothing(tmp_path: Path) -> None:
    found = detect(tmp_path)

    assert not found.is_web_app
    assert found.framework is None and found.tests is None and found.dependencies == ()
    assert any("no web framework" in note for note in found.notes)
    assert any("no dependencies" in note for note in found.notes)


def test_a_library_is_not_a_web_app(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "textkit"\ndependencies = ["regex"]\n'
    )
    (tmp_path / "textkit").mkdir()
    (tmp_path / "textkit" / "__init__.py").write_text("def words(s):\n    return s.split()\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_words.py").write_text("def test_words():\n    pass\n")

    found = detect(tmp_path)

    assert found.framework is None and not found.is_web_app
    assert found.package is not None and found.package.value == "textkit"
    assert found.tests is not None and found.tests.folder == "tests"
    assert found.notes[0].startswith("no web framework")


def test_a_framework_without_an_app_object_says_so(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask==3.0.0\n")
    (tmp_path / "helpers.py").write_text("from flask import jsonify\n")

    found = detect(tmp_path)

    assert found.framework is Framework.FLASK and found.app is None
    assert any("no flask application object" in note for note in found.notes)


def test_a_broken_pyproject_is_a_problem_named_not_a_crash(notes: Path) -> None:
    (notes / "pyproject.toml").write_text('[project\nname = "notes"\n')
    (notes / "notes" / "broken.py").write_text("def (:\n")

    found = detect(notes)

    assert any(p.startswith("pyproject.toml: not valid TOML") for p in found.problems)
    assert any(p.startswith("notes/broken.py:1: not valid Python") for p in found.problems)
    assert found.framework is Framework.FLASK  # the source still says what it is
    assert found.main_dependencies is None


def test_the_app_is_never_imported(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "app.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom fastapi import FastAPI\napp = FastAPI()\n"
    )

    found = detect(tmp_path)

    assert found.app == AppTarget("app", "app")
    assert not marker.exists()


def test_hostile_names_are_not_taken(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "import os\nfrom flask import Flask\napp = Flask(__name__)\n"
        "DB = os.environ.get('X\\nY_DB', 'a.db')\n"
        "@app.route('/he\"alth')\ndef h():\n    return ''\n"
        "import click\n@click.command('init-db; rm -rf /')\ndef c():\n    pass\n"
    )
    (tmp_path / "evil\nname.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")

    found = detect(tmp_path)

    assert found.app == AppTarget("app", "app")
    assert found.data == () and found.tasks == () and found.health is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from starlette.applications import Starlette\napp = Starlette()\n", "app:app"),
        (
            "from fastapi import FastAPI\ndef create_app():\n    return FastAPI()\n",
            "app:create_app()",
        ),
        ("import flask\napplication = flask.Flask(__name__)\n", "app:application"),
    ],
)
def test_app_objects_of_each_kind(tmp_path: Path, source: str, expected: str) -> None:
    (tmp_path / "app.py").write_text(source)

    assert str(detect(tmp_path).app) == expected


def test_health_routes_under_a_blueprint_prefix(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        "from flask import Flask, Blueprint\napp = Flask(__name__)\n"
        "ops = Blueprint('ops', __name__, url_prefix='/ops')\n"
        "@ops.route('/healthz')\ndef healthz():\n    return 'ok'\n"
        "@app.route('/write', methods=['POST'])\ndef write():\n    return ''\n"
    )

    found = detect(tmp_path)

    assert found.health is None  # /ops/healthz is not a health path conveyor init knows
    assert found.home is not None and found.home.value == "/ops/healthz"


def test_django_project_and_its_migrations(tmp_path: Path) -> None:
    (tmp_path / "manage.py").write_text(
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'site1.settings')\n"
    )
    (tmp_path / "site1").mkdir()
    (tmp_path / "site1" / "__init__.py").write_text("")
    (tmp_path / "site1" / "wsgi.py").write_text("application = None\n")
    (tmp_path / "site1" / "urls.py").write_text("urlpatterns = [path('status/', view)]\n")

    found = detect(tmp_path)

    assert found.framework is Framework.DJANGO
    assert str(found.app) == "site1.wsgi:application"
    assert found.health is not None and found.health.value == "/status/"
    assert [t.command for t in found.tasks] == [("python", "manage.py", "migrate", "--noinput")]


def test_alembic_is_a_migration_hook(todo: Path) -> None:
    (todo / "alembic.ini").write_text("[alembic]\nscript_location = alembic\n")

    tasks = detect(todo).tasks

    assert [t.command for t in tasks] == [("python", "-m", "alembic", "upgrade", "head")]


def test_a_hashed_requirements_file_is_a_lock(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("flask==3.0.0 --hash=sha256:abc\n")

    (source,) = detect(tmp_path).dependencies

    assert source.kind is DependencyKind.LOCK


def test_a_requirements_file_is_preferred_to_pyproject_ranges(notes: Path) -> None:
    (notes / "requirements.txt").write_text("flask==3.1.0\n")
    (notes / "requirements-dev.txt").write_text("-r requirements.txt\npytest==8.3.4\n")

    found = detect(notes)

    assert found.main_dependencies is not None
    assert found.main_dependencies.path == "requirements.txt"
    assert found.tests is not None and found.tests.requirements == ("requirements-dev.txt",)
