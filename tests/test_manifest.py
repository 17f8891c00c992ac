"""The dependency manifests are honest: what the code imports is what pyproject declares.

For Conveyor (src/conveyor against pyproject.toml, its extras included) and for the
OpenFeature provider's distribution (packages/conveyor-openfeature, which must not need
Conveyor or anything it does not declare). Function-level imports count too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROVIDER = ROOT / "packages" / "conveyor-openfeature"
# Imported but not declared, each with where and why; an entry the code no longer needs
# fails the test, so the list only shrinks.
KNOWN_UNDECLARED: dict[str, str] = {}


def imported_modules(root: Path) -> dict[str, set[str]]:
    """Top-level third-party modules imported under `root`, with the files importing them."""
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != root.name:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared(pyproject: Path, *, extras: bool) -> set[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project.get("dependencies", []))
    if extras:
        for group in project.get("optional-dependencies", {}).values():
            requirements += group
    return {canonicalize_name(Requirement(text).name) for text in requirements}


def undeclared(modules: dict[str, set[str]], names: set[str]) -> dict[str, set[str]]:
    providers = importlib.metadata.packages_distributions()
    return {
        module: files
        for module, files in modules.items()
        if not {canonicalize_name(d) for d in providers.get(module, [module])} & names
    }


def test_conveyor_declares_every_distribution_it_imports() -> None:
    modules = imported_modules(ROOT / "src" / "conveyor")

    missing = undeclared(modules, declared(ROOT / "pyproject.toml", extras=True))

    assert set(missing) == set(KNOWN_UNDECLARED), missing
    assert "semgrep" not in declared(ROOT / "pyproject.toml", extras=True)  # its own venv


def test_conveyor_declares_nothing_it_does_not_import() -> None:
    modules = imported_modules(ROOT / "src" / "conveyor")
    providers = importlib.metadata.packages_distributions()
    imported = {canonicalize_name(d) for m in modules for d in providers.get(m, [m])}

    unused = declared(ROOT / "pyproject.toml", extras=False) - imported

    assert unused == set()


def test_the_provider_distribution_needs_only_what_it_declares() -> None:
    modules = imported_modules(PROVIDER / "src" / "conveyor_openfeature")

    assert "conveyor" not in modules
    assert undeclared(modules, declared(PROVIDER / "pyproject.toml", extras=False)) == {}
    assert declared(PROVIDER / "pyproject.toml", extras=False) == {
        "openfeature-sdk",
        "httpx",
        "pydantic",
        "mmh3",
        "semver",
    }
