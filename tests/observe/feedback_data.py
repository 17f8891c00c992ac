"""Feedback as a router spools it, for tests that need posts without a router."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path

from conveyor.deploy.routers.feedback_intake import SPOOL_FILE
from conveyor.observe import feedback


def spool(
    state_dir: Path,
    environment: str,
    posts: Sequence[dict[str, object]],
    raw: Sequence[bytes] = (),
) -> Path:
    """Append `posts` (and `raw` lines) to the environment's router spool."""
    folder = feedback.router_folder(state_dir, environment)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(post).encode() for post in posts] + list(raw)
    with (folder / SPOOL_FILE).open("ab") as file:
        file.write(b"".join(line + b"\n" for line in lines))
    return folder


def posts(
    release: str | None,
    ratings: Sequence[int],
    variants: dict[str, str] | None = None,
    texts: Sequence[str] = (),
) -> list[dict[str, object]]:
    """Posts as the router writes them; `texts` cycles over the ratings."""
    return [
        {
            "id": f"{release}-{index}-{random.getrandbits(48):x}",
            "ts": time.time(),
            "release_id": release,
            "route": "sticky",
            "rating": rating,
            "text": texts[index % len(texts)] if texts else "",
            "variants": variants or {},
        }
        for index, rating in enumerate(ratings)
    ]
