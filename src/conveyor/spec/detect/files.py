"""Reading a project folder without trusting it: bounded walks, no symlinks out, no
imports (source is parsed with `ast`, never executed)."""

from __future__ import annotations

import ast
import re
import tomllib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 1_000_000
# A file or folder name conveyor init may write into conveyor.yml; others are skipped.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
SAFE_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$")
MAX_FILES = 2_000
MAX_FOLDERS = 5_000  # a home folder or a monorepo's root is not walked to the end
_SKIPPED_DIRS = frozenset(
    {
        "node_modules",
        "site-packages",
        "__pycache__",
        "build",
        "dist",
        "venv",
        "env",
        "docs",
    }
)


class Unreadable(Exception):
    """A file that is not valid TOML or Python; the message says where and why."""


@dataclass(frozen=True)
class SourceFile:
    path: str  # relative to the project folder, posix
    tree: ast.Module


def relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def read_text(root: Path, name: str) -> str | None:
    """A small regular file inside the folder, or None (missing, a symlink, too big)."""
    path = root / name
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_toml(root: Path, name: str) -> dict[str, Any] | None:
    text = read_text(root, name)
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise Unreadable(f"{name}: not valid TOML ({error})") from None


def python_files(root: Path) -> Iterator[Path]:
    """The folder's .py files, in a stable order, skipping hidden folders, virtualenvs and
    build output, never following a symlink; at most MAX_FILES."""
    count = 0
    folders = 0
    stack = [root]
    while stack and folders < MAX_FOLDERS:
        folder = stack.pop()
        folders += 1
        try:
            entries = sorted(folder.iterdir(), key=lambda p: p.name, reverse=True)
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink() or not SAFE_NAME.match(entry.name):
                continue
            if entry.is_dir():
                if entry.name not in _SKIPPED_DIRS and not (entry / "pyvenv.cfg").exists():
                    stack.append(entry)
            elif entry.suffix == ".py":
                count += 1
                if count > MAX_FILES:
                    return
                yield entry


def parse_sources(root: Path) -> tuple[list[SourceFile], list[str]]:
    """Every readable .py file as a syntax tree, and the problems with the others."""
    parsed: list[SourceFile] = []
    problems: list[str] = []
    for path in python_files(root):
        name = relative(root, path)
        text = read_text(root, name)
        if text is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. invalid escape sequences
                tree = ast.parse(text, filename=name)
        except (SyntaxError, ValueError) as error:
            line = getattr(error, "lineno", None) or 0
            problems.append(f"{name}:{line}: not valid Python ({getattr(error, 'msg', error)})")
            continue
        parsed.append(SourceFile(name, tree))
    return parsed, problems


def module_name(path: str, import_root: str) -> str | None:
    """`todo/main.py` -> `todo.main`; `src/notes/__init__.py` (root `src`) -> `notes`."""
    if import_root != ".":
        prefix = import_root.rstrip("/") + "/"
        if not path.startswith(prefix):
            return None
        path = path[len(prefix) :]
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    if not parts or not all(part.isidentifier() for part in parts):
        return None
    return ".".join(parts)
