"""What `conveyor init` found in a project folder, each finding with where it was seen."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


@dataclass(frozen=True)
class Clue:
    """Where a finding comes from: a file (relative, posix), a line (0: the whole file)
    and what was seen there."""

    file: str
    line: int
    seen: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.seen}"


class Framework(StrEnum):
    FASTAPI = "fastapi"
    STARLETTE = "starlette"
    FLASK = "flask"
    DJANGO = "django"

    @property
    def interface(self) -> Interface:
        return (
            Interface.ASGI if self in (Framework.FASTAPI, Framework.STARLETTE) else Interface.WSGI
        )


class Interface(StrEnum):
    ASGI = "asgi"  # served by uvicorn
    WSGI = "wsgi"  # served by gunicorn


@dataclass(frozen=True)
class AppTarget:
    """The application object a server loads: `module:attribute`, or `module:factory()`."""

    module: str
    attribute: str
    factory: bool = False

    def __str__(self) -> str:
        return f"{self.module}:{self.attribute}{'()' if self.factory else ''}"


class DependencyKind(StrEnum):
    PYPROJECT = "pyproject"  # [project] dependencies
    REQUIREMENTS = "requirements"  # a requirements file
    LOCK = "lock"  # a requirements file with hashes for every line


@dataclass(frozen=True)
class DependencySource:
    kind: DependencyKind
    path: str
    names: frozenset[str]  # normalized distribution names it lists
    clue: Clue


@dataclass(frozen=True)
class TestSetup:
    __test__ = False  # not a pytest class

    folder: str
    command: tuple[str, ...]
    extras: tuple[str, ...]  # optional-dependency groups of pyproject.toml with the test tools
    requirements: tuple[str, ...]  # requirements files with the test tools
    clue: Clue


@dataclass(frozen=True)
class DataSetting:
    """An environment variable naming a file the app writes (a SQLite database)."""

    variable: str
    filename: str
    clue: Clue


@dataclass(frozen=True)
class Task:
    """A command to run once per release before it gets traffic (migrations, init-db)."""

    name: str
    command: tuple[str, ...]
    clue: Clue


@dataclass(frozen=True)
class Found:
    """A string finding (a path, a package) with where it was seen."""

    value: str
    clue: Clue


@dataclass(frozen=True)
class Detection:
    name: str
    framework: Framework | None = None
    framework_clue: Clue | None = None
    package: Found | None = None
    import_root: str = "."  # "src" for a src layout
    app: AppTarget | None = None
    app_clue: Clue | None = None
    dependencies: tuple[DependencySource, ...] = ()
    tests: TestSetup | None = None
    health: Found | None = None
    home: Found | None = None  # a GET route at "/" (or another path) a smoke check can read
    data: tuple[DataSetting, ...] = ()
    secrets: tuple[DataSetting, ...] = ()  # variables that look like secrets
    tasks: tuple[Task, ...] = ()
    problems: tuple[str, ...] = ()  # files that could not be read or parsed
    notes: tuple[str, ...] = field(default=())  # what could not be detected, and why

    @property
    def is_web_app(self) -> bool:
        return self.framework is not None and self.app is not None

    @property
    def main_dependencies(self) -> DependencySource | None:
        """What the image installs: a lock first, then a requirements file (the pinned set
        a project deploys, beside looser pyproject.toml ranges), then pyproject.toml."""
        order = (DependencyKind.LOCK, DependencyKind.REQUIREMENTS, DependencyKind.PYPROJECT)
        for kind in order:
            for source in self.dependencies:
                if kind is source.kind and not _is_dev_file(source.path):
                    return source
        return None


def _is_dev_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return any(word in name for word in ("dev", "test", "lint", "doc", "ci"))


def is_dev_requirements(path: str) -> bool:
    return _is_dev_file(path)
