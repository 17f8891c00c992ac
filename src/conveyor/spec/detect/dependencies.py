"""Where a project declares its dependencies and its test tools: pyproject.toml's
`[project]` table, requirements files (a lock when every line carries a hash), and the
pytest settings that name its tests folder."""

from __future__ import annotations

import configparser
import re
from pathlib import Path
from typing import Any

from conveyor.spec.detect.files import SAFE_PATH, python_files, read_text, relative
from conveyor.spec.detect.model import (
    Clue,
    DependencyKind,
    DependencySource,
    TestSetup,
    is_dev_requirements,
)

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_TEST_GROUPS = ("test", "tests", "testing", "dev")
_DEV_FILES = (
    "requirements-dev.txt",
    "requirements-test.txt",
    "requirements_dev.txt",
    "requirements_test.txt",
    "dev-requirements.txt",
    "test-requirements.txt",
    "requirements/dev.txt",
    "requirements/test.txt",
)
PYTEST = ("python", "-m", "pytest", "-q", "-p", "no:cacheprovider")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The distribution a requirement line names (`Flask[async]>=3` -> flask), or None."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    match = _NAME.match(line)
    return normalize(match.group(1)) if match else None


def pyproject_dependencies(pyproject: dict[str, Any] | None) -> list[str]:
    project = (pyproject or {}).get("project")
    deps = project.get("dependencies") if isinstance(project, dict) else None
    return [d for d in deps if isinstance(d, str)] if isinstance(deps, list) else []


def optional_groups(pyproject: dict[str, Any] | None) -> dict[str, list[str]]:
    project = (pyproject or {}).get("project")
    groups = project.get("optional-dependencies") if isinstance(project, dict) else None
    if not isinstance(groups, dict):
        return {}
    return {
        str(name): [d for d in deps if isinstance(d, str)]
        for name, deps in groups.items()
        if isinstance(deps, list)
    }


def from_pyproject(pyproject: dict[str, Any] | None) -> DependencySource | None:
    deps = pyproject_dependencies(pyproject)
    if pyproject is None or "project" not in pyproject:
        return None
    names = frozenset(n for n in map(requirement_name, deps) if n)
    seen = f"[project] dependencies: {', '.join(deps) if deps else 'none'}"
    return DependencySource(
        DependencyKind.PYPROJECT, "pyproject.toml", names, Clue("pyproject.toml", 0, seen)
    )


def requirement_files(root: Path) -> list[DependencySource]:
    """requirements*.txt at the top and in requirements/: each a file, or a lock."""
    found: list[DependencySource] = []
    candidates = sorted(root.glob("requirements*.txt")) + sorted(root.glob("*requirements.txt"))
    candidates += (
        sorted((root / "requirements").glob("*.txt")) if (root / "requirements").is_dir() else []
    )
    seen: set[str] = set()
    for path in candidates:
        name = relative(root, path)
        text = read_text(root, name) if SAFE_PATH.match(name) else None
        if name in seen or text is None:
            continue
        seen.add(name)
        lines = [line.strip() for line in text.splitlines()]
        pinned = [line for line in lines if requirement_name(line)]
        hashed = bool(pinned) and all("--hash=" in line for line in pinned)
        kind = DependencyKind.LOCK if hashed else DependencyKind.REQUIREMENTS
        names = frozenset(_names_with_includes(root, name, depth=0))
        what = "a lock (every requirement has a hash)" if hashed else f"{len(pinned)} requirements"
        found.append(DependencySource(kind, name, names, Clue(name, 0, what)))
    return found


def _names_with_includes(root: Path, name: str, depth: int) -> set[str]:
    text = read_text(root, name)
    if text is None or depth > 5:
        return set()
    names: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("-r", "--requirement"):
            included = (Path(name).parent / parts[1]).as_posix()
            if not included.startswith("/") and ".." not in included.split("/"):
                names |= _names_with_includes(root, included, depth + 1)
        elif (requirement := requirement_name(line)) is not None:
            names.add(requirement)
    return names


def find_tests(
    root: Path, pyproject: dict[str, Any] | None, sources: list[DependencySource]
) -> TestSetup | None:
    folder, clue = _tests_folder(root, pyproject)
    if folder is None or clue is None:
        return None
    groups = optional_groups(pyproject)
    extras = tuple(g for g in groups if g in _TEST_GROUPS)
    dev = tuple(s.path for s in sources if s.path in _DEV_FILES or is_dev_requirements(s.path))
    return TestSetup(folder, PYTEST, extras, dev, clue)


def _tests_folder(root: Path, pyproject: dict[str, Any] | None) -> tuple[str | None, Clue | None]:
    configured = _configured_testpaths(root, pyproject)
    if configured is not None:
        return configured
    for name in ("tests", "test"):
        folder = root / name
        if folder.is_dir() and not folder.is_symlink():
            test = next((p.name for p in python_files(folder) if _is_test_module(p.name)), None)
            if test is not None:
                return name, Clue(name, 0, f"a tests folder ({test}, ...)")
    return None, None


def _is_test_module(name: str) -> bool:
    return name.startswith("test") or name.endswith("_test.py")


def _configured_testpaths(root: Path, pyproject: dict[str, Any] | None) -> tuple[str, Clue] | None:
    tool = (pyproject or {}).get("tool")
    options = tool.get("pytest", {}).get("ini_options") if isinstance(tool, dict) else None
    if isinstance(options, dict):
        paths = options.get("testpaths")
        if isinstance(paths, list) and paths and isinstance(paths[0], str):
            return _inside(root, paths[0], "pyproject.toml", "[tool.pytest.ini_options] testpaths")
    for name, section in (
        ("pytest.ini", "pytest"),
        ("setup.cfg", "tool:pytest"),
        ("tox.ini", "pytest"),
    ):
        text = read_text(root, name)
        if text is None:
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read_string(text, source=name)
        except configparser.Error:
            continue
        if parser.has_option(section, "testpaths"):
            first = parser.get(section, "testpaths").split()
            if first:
                return _inside(root, first[0], name, f"[{section}] testpaths")
    return None


def _inside(root: Path, path: str, file: str, key: str) -> tuple[str, Clue] | None:
    path = path.strip().strip("/") or "."
    if not SAFE_PATH.match(path) or ".." in path.split("/") or not (root / path).is_dir():
        return None
    return path, Clue(file, 0, f"{key} = {path}")
