"""A project's dependencies from `pyproject.toml` (PEP 621 `[project]`), as requirement lines.

Read with the standard library's tomllib, without building the project: a project whose
dependencies are `dynamic` (computed by its build backend) cannot be read this way and is
told to give a requirements file. An extra may name the project itself
(`all = ["shop[db,web]"]`); those extras are expanded here, since pip would otherwise look
for the project on the index.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from conveyor.errors import ConveyorError


def pyproject_requirements(path: Path, extras: Sequence[str] = ()) -> list[str] | None:
    """The requirement lines of `[project] dependencies` plus the `extras` named; None when
    the file has no `[project]` table with dependencies (and no extras were asked for)."""
    project = _project_table(path)
    if project is not None and "dependencies" in (project.get("dynamic") or []):
        raise ConveyorError(
            f"{path.name} declares its dependencies dynamic: they are known only to its "
            "build backend",
            hint="give build-image a requirements file (`requirements:`), e.g. a lock",
        )
    if project is None or ("dependencies" not in project and not extras):
        if extras:
            raise ConveyorError(f"{path.name} has no [project] table, so no extras {extras}")
        return None
    name = canonicalize_name(str(project.get("name") or ""))
    lines = _strings(project.get("dependencies", []), f"{path.name}: project.dependencies")
    optional = project.get("optional-dependencies") or {}
    if not isinstance(optional, dict):
        raise ConveyorError(f"{path.name}: project.optional-dependencies must be a table")
    for extra in _expand(extras, name, optional, path.name):
        lines += _strings(optional[extra], f"{path.name}: project.optional-dependencies.{extra}")
    return [line for line in dict.fromkeys(lines) if not _names_project(line, name)]


def _project_table(path: Path) -> dict[str, Any] | None:
    try:
        document = tomllib.loads(path.read_text())
    except OSError as error:
        raise ConveyorError(f"cannot read {path.name}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConveyorError(f"{path.name} is not valid TOML: {error}") from None
    project = document.get("project")
    if project is not None and not isinstance(project, dict):
        raise ConveyorError(f"{path.name}: [project] must be a table")
    return project


def _expand(extras: Sequence[str], name: str, optional: dict[str, Any], file: str) -> list[str]:
    """The extras asked for, with those a self-reference pulls in, each once."""
    wanted: list[str] = []
    pending = [canonicalize_name(extra) for extra in extras]
    declared = {canonicalize_name(key): key for key in optional}
    while pending:
        extra = pending.pop(0)
        if extra not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ConveyorError(f"{file} declares no extra {extra!r} (declared: {known})")
        if declared[extra] in wanted:
            continue
        wanted.append(declared[extra])
        for line in _strings(optional[declared[extra]], f"{file}: extra {extra}"):
            if _names_project(line, name):
                pending += [canonicalize_name(e) for e in Requirement(line).extras]
    return wanted


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConveyorError(f"{where} must be a list of requirement strings")
    for item in value:
        try:
            Requirement(item)
        except InvalidRequirement as error:
            raise ConveyorError(f"{where}: {item!r} is not a requirement: {error}") from None
    return list(value)


def _names_project(line: str, name: str) -> bool:
    return bool(name) and canonicalize_name(Requirement(line).name) == name
