"""The third-party-style apps of tests/data/apps, copied where a test may change them."""

from __future__ import annotations

import shutil
from pathlib import Path

APPS = Path(__file__).resolve().parent / "data" / "apps"
FLASK_NOTES = "flask-notes"
FASTAPI_TODO = "fastapi-todo"


def copy_app(name: str, into: Path) -> Path:
    target = into / name
    shutil.copytree(APPS / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target
