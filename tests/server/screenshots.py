"""The README's screenshots, taken by the browser tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

UPDATE_ENV = "UPDATE_README_SCREENSHOTS"  # not CONVEYOR_*: the tests clear those


def keep(taken: Path, readme_copy: Path) -> None:
    """Check the screenshot is a real image; copy it over the README's when asked."""
    assert taken.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and taken.stat().st_size > 20_000
    if os.environ.get(UPDATE_ENV) == "1":
        readme_copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(taken, readme_copy)
