"""Job ids as file and folder names."""

from __future__ import annotations

import re


def safe_name(job_id: str) -> str:
    """A file or folder name for a job id such as `test[python=3.11]`."""
    return re.sub(r"[^A-Za-z0-9_.=,-]", "_", job_id)
