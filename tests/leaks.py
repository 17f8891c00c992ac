"""Looking for a secret, in clear, in what Conveyor showed or kept (issue 12's tests)."""

from __future__ import annotations

import base64
from pathlib import Path


def clear_forms(secret: str) -> list[bytes]:
    """The secret and each half of it, raw and in base64 (alone or inside base64 of
    "user:" and the secret four times, as wrapped at 76 columns)."""
    forms = [secret, secret[:10], secret[10:], base64.b64encode(secret.encode()).decode()]
    wrapped = base64.b64encode(f"user:{secret * 4}".encode()).decode()
    forms += [wrapped[12:40], wrapped[80:120]]
    return [form.encode() for form in forms]


def holding(secret: str, *texts: str) -> list[int]:
    """The indexes of the texts that hold the secret in any clear form."""
    forms = clear_forms(secret)
    return [i for i, text in enumerate(texts) if any(form in text.encode() for form in forms)]


def files_holding(secret: str, folder: Path) -> list[str]:
    """Every file under `folder` (but a run's workspace, the job's own checkout) that
    holds the secret in any clear form: a database, its WAL, blobs, logs, release.json."""
    forms = clear_forms(secret)
    return [
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file()
        and "workspace" not in path.parts
        and any(form in path.read_bytes() for form in forms)
    ]
