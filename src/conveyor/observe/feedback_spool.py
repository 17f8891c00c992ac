"""Moving the router's spooled feedback into the store: each post once (by the router's
id), well-formed posts only, flag variants checked against the environment's flags, one
`feedback.received` event per batch for the live views."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from conveyor.deploy.routers.feedback_intake import MAX_RATING, MIN_RATING, NAME, SPOOL_FILE
from conveyor.flags.store import FlagLedger
from conveyor.store import events as event_log
from conveyor.store.db import write_transaction
from conveyor.store.records import EventKind
from conveyor.store.schema import feedback as feedback_table
from conveyor.store.store import Store

MAX_TEXT = 2000  # what is kept of a spooled text (the router limits it already)


def router_folder(state_dir: Path, environment: str) -> Path:
    """Where the environment's router keeps its state (service/environments.make_router)."""
    return state_dir / "environments" / environment / "router"


def spooled(folder: Path) -> list[dict[str, Any]]:
    """The posts in the router's spool, the rotated file first; broken lines are skipped
    (a line is written whole, so only a damaged file has them)."""
    posts: list[dict[str, Any]] = []
    for path in (folder / f"{SPOOL_FILE}.1", folder / SPOOL_FILE):
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue
        for line in lines:
            try:
                post = json.loads(line)
            except ValueError:
                continue
            if isinstance(post, dict):
                posts.append(post)
    return posts


def ingest(store: Store, environment: str, folder: Path | None = None) -> int:
    """Move the router's spooled posts into the store; returns how many were new."""
    folder = folder or router_folder(store.state_dir, environment)
    posts = spooled(folder)
    if not posts:
        return 0
    known_variants = _known_variants(store, environment)
    with write_transaction(store.engine) as conn:
        ids = [str(post.get("id")) for post in posts]
        seen = set(
            conn.scalars(
                sa.select(feedback_table.c.feedback_id).where(feedback_table.c.feedback_id.in_(ids))
            )
        )
        rows = []
        for post in posts:
            row = _row(post, environment, known_variants)
            if row is not None and row["feedback_id"] not in seen:
                seen.add(row["feedback_id"])
                rows.append(row)
        if rows:
            conn.execute(sa.insert(feedback_table), rows)
            event_log.append(conn, [_event(environment, rows)])
    return len(rows)


def _known_variants(store: Store, environment: str) -> dict[str, set[str]]:
    snapshot = FlagLedger(store.engine).snapshot(environment)
    return {
        name: {variant.name for variant in record.flag.variants} | {"on", "off"}
        for name, record in snapshot.flags.items()
    }


def _row(
    post: dict[str, Any], environment: str, known: dict[str, set[str]]
) -> dict[str, Any] | None:
    """The store's row for a spooled post, or None for one that is not well formed (the
    spool is the router's, but a file can be damaged or written by someone else)."""
    rating, feedback_id = post.get("rating"), post.get("id")
    release_id, text = post.get("release_id"), post.get("text", "")
    ts = post.get("ts")
    if (
        type(rating) is not int
        or not MIN_RATING <= rating <= MAX_RATING
        or not isinstance(feedback_id, str)
        or not NAME.fullmatch(feedback_id)
        or not isinstance(text, str)
        or not isinstance(ts, int | float)
        or not (release_id is None or isinstance(release_id, str))
    ):
        return None
    raw = post.get("variants")
    variants = {
        flag: variant
        for flag, variant in (raw.items() if isinstance(raw, dict) else ())
        if isinstance(variant, str) and variant in known.get(flag, ())
    }
    return {
        "feedback_id": feedback_id,
        "environment": environment,
        "received_at": float(ts),
        "release_id": release_id,
        "route": str(post.get("route", "unknown"))[:16],
        "variants": variants,
        "rating": rating,
        "text": text[:MAX_TEXT],
    }


def _event(environment: str, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    per_release: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        per_release[row["release_id"] or "unknown"].append(row["rating"])
    return event_log.event_row(
        EventKind.FEEDBACK_RECEIVED,
        time.time(),
        actor="router",
        data={
            "environment": environment,
            "count": len(rows),
            "releases": {
                release: {"count": len(ratings), "mean": sum(ratings) / len(ratings)}
                for release, ratings in sorted(per_release.items())
            },
        },
    )


def router_answers(store: Store, environment: str) -> dict[str, int] | None:
    """The router's answers to feedback posts since it started, by status (202 taken,
    429 and 503 floods, 413 too big, ...); None when its admin port does not answer."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    record = store.ledger.environments.get(environment)
    if record is None:
        return None
    try:
        response = httpx.get(f"http://127.0.0.1:{record.admin_port}/-/metrics", timeout=1.0)
        response.raise_for_status()
        families = list(text_string_to_metric_families(response.text))
    except (httpx.HTTPError, ValueError):
        return None
    return {
        sample.labels["code"]: int(sample.value)
        for family in families
        for sample in family.samples
        if sample.name == "conveyor_router_feedback_posts_total" and "code" in sample.labels
    }
