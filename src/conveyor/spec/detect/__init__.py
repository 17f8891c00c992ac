"""What kind of project a folder holds, for `conveyor init`: a Python web app's
framework, application object, dependencies, tests, health route, data files and
database tasks, each with the file and line it was read from. Pure functions over the
folder: source is parsed with `ast`, nothing is imported or run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from conveyor.spec.detect import apps, dependencies, routes
from conveyor.spec.detect.files import SourceFile, Unreadable, parse_sources, read_toml
from conveyor.spec.detect.model import (
    AppTarget,
    Clue,
    DependencySource,
    Detection,
    Found,
    Framework,
    Task,
)

__all__ = ["Detection", "detect"]


def detect(root: Path) -> Detection:
    root = root.resolve()
    problems: list[str] = []
    try:
        pyproject = read_toml(root, "pyproject.toml")
    except Unreadable as error:
        problems.append(str(error))
        pyproject = None
    sources, unparsed = parse_sources(root)
    problems.extend(unparsed)
    deps = [d for d in [dependencies.from_pyproject(pyproject)] if d is not None]
    deps += dependencies.requirement_files(root)
    tests = dependencies.find_tests(root, pyproject, deps)
    app_sources = [s for s in sources if not _is_test_file(s.path, tests.folder if tests else None)]
    import_root = _import_root(root)
    framework, framework_clue, app, app_clue = _application(root, app_sources, import_root, deps)
    get_routes = [r for s in app_sources for r in routes.get_routes(s)]
    health = routes.health_route(get_routes)
    home = routes.home_route(get_routes)
    package = _package(root, app, pyproject, import_root)
    detection = Detection(
        name=_name(root, pyproject),
        framework=framework,
        framework_clue=framework_clue,
        package=package,
        import_root=import_root,
        app=app,
        app_clue=app_clue,
        dependencies=tuple(deps),
        tests=tests,
        health=Found(health.path, Clue(health.file, health.line, f"GET {health.path}"))
        if health
        else None,
        home=Found(home.path, Clue(home.file, home.line, f"GET {home.path}")) if home else None,
        data=tuple(apps.data_settings(app_sources)),
        secrets=tuple(apps.secret_settings(app_sources)),
        tasks=tuple(_tasks(root, framework, app, app_sources)),
        problems=tuple(problems),
    )
    return _with_notes(detection)


def _is_test_file(path: str, tests_folder: str | None) -> bool:
    name = path.rsplit("/", 1)[-1]
    in_tests = tests_folder not in (None, ".") and path.startswith(f"{tests_folder}/")
    return (
        in_tests or name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
    )


def _import_root(root: Path) -> str:
    src = root / "src"
    if src.is_dir() and any(p.is_file() for p in src.glob("*/__init__.py")):
        return "src"
    return "."


def _name(root: Path, pyproject: dict[str, Any] | None) -> str:
    project = (pyproject or {}).get("project")
    name = project.get("name") if isinstance(project, dict) else None
    raw = name if isinstance(name, str) and name else root.name
    cleaned = re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-")[:40]
    return cleaned if cleaned and cleaned[0].isalpha() else f"app-{cleaned}".rstrip("-")


def _application(
    root: Path,
    sources: list[SourceFile],
    import_root: str,
    deps: list[DependencySource],
) -> tuple[Framework | None, Clue | None, AppTarget | None, Clue | None]:
    candidates = apps.app_candidates(sources, import_root)
    if candidates:
        best = candidates[0]
        # The import in the app's own module says most; else the first one anywhere.
        own = [s for s in sources if s.path == best.clue.file]
        imports = {**apps.imported_frameworks(sources), **apps.imported_frameworks(own)}
        first_import = imports.get(best.framework)
        return best.framework, first_import or best.clue, best.target, best.clue
    django = apps.django_app(root)
    if django is not None:
        target, clue = django
        return Framework.DJANGO, clue, target, clue
    imported = apps.imported_frameworks(sources)
    for framework in Framework:
        if framework in imported:
            return framework, imported[framework], None, None
        for source in deps:
            if framework.value in source.names:
                return framework, source.clue, None, None
    return None, None, None, None


def _package(
    root: Path, app: AppTarget | None, pyproject: dict[str, Any] | None, import_root: str
) -> Found | None:
    base = root if import_root == "." else root / import_root
    if app is not None:
        top = app.module.split(".")[0]
        where = f"{import_root}/{top}" if import_root != "." else top
        if (base / top).is_dir() or (base / f"{top}.py").is_file():
            return Found(top, Clue(where, 0, "holds the application"))
    packages = sorted(
        p.parent.name
        for p in base.glob("*/__init__.py")
        if p.parent.name.isidentifier() and p.parent.name not in ("tests", "test")
    )
    name = _name(root, pyproject).replace("-", "_")
    if name in packages:
        return Found(name, Clue(f"{name}/__init__.py", 0, "a package named as the project"))
    if len(packages) == 1:
        return Found(packages[0], Clue(f"{packages[0]}/__init__.py", 0, "the only package"))
    return None


def _tasks(
    root: Path, framework: Framework | None, app: AppTarget | None, sources: list[SourceFile]
) -> list[Task]:
    found = apps.project_tasks(root, framework)
    if framework is Framework.FLASK and app is not None:
        found = apps.flask_tasks(sources, app.module) + found
    return found


def _with_notes(found: Detection) -> Detection:
    notes: list[str] = []
    if found.framework is None:
        notes.append(
            "no web framework: no FastAPI, Starlette, Flask or Django import or dependency, "
            "so no image, server or environments were written"
        )
    elif found.app is None:
        notes.append(
            f"no {found.framework.value} application object: no module-level "
            "`app = ...(...)`, no create_app()/make_app() factory (or Django manage.py)"
        )
    if found.main_dependencies is None:
        notes.append("no dependencies: no pyproject.toml [project] table and no requirements*.txt")
    if found.tests is None:
        notes.append("no tests: no tests/ or test/ folder with test_*.py, no pytest testpaths")
    if found.framework is not None and found.health is None:
        notes.append(
            "no health route (/health, /healthz, /ready, /status, ...): readiness is a TCP "
            "connect to the app's port"
        )
    return Detection(**{**found.__dict__, "notes": tuple(notes)})
