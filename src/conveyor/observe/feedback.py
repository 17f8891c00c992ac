"""User feedback per release and per flag variant (docs/monitoring.md, "User feedback").

The environment's router takes the posts (deploy/routers/feedback_intake.py) and spools
them in its folder; `ingest` moves them into the store, idempotently (each post has the
router's id), checking the flag variants against the environment's flag definitions, and
appends one `feedback.received` event per batch for live views. Every read ingests first.

Ratings are summarised with an anytime-valid confidence sequence for a bounded mean
(empirical Bernstein, rating_sequence.py), so they can be looked at as often as one
likes; a release (or a flag variant) whose sequence lies wholly below its baseline's (the
release before it, or the flag's control variant) is a rating drop: `rating_drops`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.deploy.routers.feedback_intake import (
    MAX_RATING,
    MIN_RATING,
    NAME,
    SPOOL_FILE,
)
from conveyor.flags.store import FlagLedger
from conveyor.observe.feedback_themes import Themes, themes
from conveyor.observe.rating_sequence import rating_interval
from conveyor.store import events as event_log
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.records import EventKind
from conveyor.store.schema import feedback as feedback_table
from conveyor.store.store import Store

if TYPE_CHECKING:
    from conveyor.service.pages import Page
    from conveyor.service.project import Project

LEVEL = 0.05  # the confidence sequences' error rate
CONTROL_VARIANTS = ("control", "off", "baseline")
MAX_TEXT = 2000  # what is kept of a spooled text (the router limits it already)
MAX_REPORTED = 50_000  # a report reads at most the newest this many posts


@dataclass(frozen=True)
class Feedback:
    id: int
    feedback_id: str
    environment: str
    received_at: float
    release_id: str | None
    route: str
    variants: dict[str, str]
    rating: int
    text: str


@dataclass(frozen=True)
class RatingSummary:
    """Ratings of one release or one flag variant, with an anytime-valid interval."""

    release_id: str | None = None
    flag: str | None = None
    variant: str | None = None
    count: int = 0
    mean: float | None = None
    low: float | None = None  # the confidence sequence's bounds on the mean rating
    high: float | None = None
    low_ratings: int = 0  # ratings of 1 or 2


@dataclass(frozen=True)
class RatingDrop:
    """A signal for other parts: `candidate` is rated significantly below `baseline`."""

    kind: str  # "release" or "variant"
    candidate: RatingSummary
    baseline: RatingSummary
    level: float
    detail: str


@dataclass(frozen=True)
class FeedbackReport:
    environment: str
    count: int
    releases: list[RatingSummary]
    variants: list[RatingSummary]
    drops: list[RatingDrop]
    themes: Themes | None = None
    latest: list[Feedback] = field(default_factory=list)


# -- ingesting ---------------------------------------------------------------------------
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


# -- reading -----------------------------------------------------------------------------
def feedback_items(
    store: Store,
    environment: str,
    *,
    release_id: str | None = None,
    before_id: int | None = None,
    limit: int | None = None,
) -> list[Feedback]:
    """The environment's feedback, newest first."""
    query = (
        sa.select(feedback_table)
        .where(feedback_table.c.environment == environment)
        .order_by(feedback_table.c.id.desc())
    )
    if release_id is not None:
        query = query.where(feedback_table.c.release_id == release_id)
    if before_id is not None:
        query = query.where(feedback_table.c.id < before_id)
    if limit is not None:
        query = query.limit(limit)
    with read_transaction(store.engine) as conn:
        return [_feedback(row._mapping) for row in conn.execute(query)]


def _feedback(row: sa.RowMapping) -> Feedback:
    return Feedback(
        id=row["id"],
        feedback_id=row["feedback_id"],
        environment=row["environment"],
        received_at=row["received_at"],
        release_id=row["release_id"],
        route=row["route"],
        variants=dict(row["variants"] or {}),
        rating=row["rating"],
        text=row["text"],
    )


def report(
    store: Store,
    environment: str,
    *,
    release_id: str | None = None,
    with_themes: bool = False,
    latest: int = 20,
    level: float = LEVEL,
) -> FeedbackReport:
    """Ingest, then summarise: ratings per release and per variant, the drops, and (with
    `with_themes`) the themes of the texts; `release_id` narrows it to one release's code.
    A release's feedback counts for the first release of the same digest."""
    ingest(store, environment)
    same_code = releases_by_code(store, environment)
    items = [
        replace(item, release_id=same_code.get(item.release_id or "", item.release_id))
        for item in feedback_items(store, environment, limit=MAX_REPORTED)
    ]
    if release_id is not None:
        wanted = same_code.get(release_id, release_id)
        items = [item for item in items if item.release_id == wanted]
    order = list(dict.fromkeys(same_code.values()))
    per_release, per_variant = ratings_per_release(items), ratings_per_variant(items)
    return FeedbackReport(
        environment=environment,
        count=len(items),
        releases=release_summaries(per_release, order, level),
        variants=variant_summaries(per_variant, level),
        drops=drops_between(per_release, order, per_variant, level),
        themes=themes([(item.rating, item.text) for item in items if item.text])
        if with_themes
        else None,
        latest=items[:latest],
    )


def releases_by_code(store: Store, environment: str) -> dict[str, str]:
    """Each release of the environment -> the first release of the same digest: a canary's
    baseline (the stable code, started afresh beside the canary) or a redeploy serves the
    same code, so its users' ratings are that code's. Oldest first."""
    first: dict[str, str] = {}
    canonical: dict[str, str] = {}
    for record in store.ledger.releases.of_environment(environment):
        canonical[record.release_id] = first.setdefault(record.digest, record.release_id)
    return canonical


def rating_drops(store: Store, environment: str, level: float = LEVEL) -> list[RatingDrop]:
    """The signal other parts read: each release rated significantly below the release
    before it, and each flag variant below its flag's control variant, with evidence."""
    return report(store, environment, level=level).drops


# -- statistics --------------------------------------------------------------------------
def summarise(
    ratings: Sequence[int],
    level: float = LEVEL,
    *,
    release_id: str | None = None,
    flag: str | None = None,
    variant: str | None = None,
) -> RatingSummary:
    """Count, mean and interval of `ratings`, in arrival order."""
    key = RatingSummary(release_id=release_id, flag=flag, variant=variant)
    if not ratings:
        return key
    low, high = rating_interval(ratings, level, MIN_RATING, MAX_RATING)
    return replace(
        key,
        count=len(ratings),
        mean=round(sum(ratings) / len(ratings), 3),
        low=round(low, 3),
        high=round(high, 3),
        low_ratings=sum(1 for rating in ratings if rating <= 2),
    )


def ratings_per_release(items: Iterable[Feedback]) -> dict[str | None, list[int]]:
    """Each release's ratings in arrival order (`items` come newest first)."""
    ratings: dict[str | None, list[int]] = defaultdict(list)
    for item in reversed(list(items)):
        ratings[item.release_id].append(item.rating)
    return ratings


def ratings_per_variant(items: Iterable[Feedback]) -> dict[tuple[str, str], list[int]]:
    ratings: dict[tuple[str, str], list[int]] = defaultdict(list)
    for item in reversed(list(items)):
        for flag, variant in item.variants.items():
            ratings[(flag, variant)].append(item.rating)
    return ratings


def release_summaries(
    ratings: dict[str | None, list[int]], order: Sequence[str], level: float = LEVEL
) -> list[RatingSummary]:
    """Per release, in the order the releases were created (unknown ones last)."""
    rank = {release: index for index, release in enumerate(order)}
    keys = sorted(ratings, key=lambda r: (r is None, rank.get(r or "", len(rank)), r or ""))
    return [summarise(ratings[key], level, release_id=key) for key in keys]


def variant_summaries(
    ratings: dict[tuple[str, str], list[int]], level: float = LEVEL
) -> list[RatingSummary]:
    return [summarise(ratings[key], level, flag=key[0], variant=key[1]) for key in sorted(ratings)]


def drops_between(
    per_release: dict[str | None, list[int]],
    order: Sequence[str],
    per_variant: dict[tuple[str, str], list[int]],
    level: float = LEVEL,
) -> list[RatingDrop]:
    """Each release against the one before it, each variant against its flag's control:
    both sequences at `level / 2`, so that the pair's error stays under `level`."""
    half = level / 2
    drops = []
    known = [
        summarise(per_release[release], half, release_id=release)
        for release in order
        if per_release.get(release)
    ]
    for baseline, candidate in itertools.pairwise(known):
        drops.append(_drop("release", candidate, baseline, level))
    by_flag: dict[str, list[RatingSummary]] = defaultdict(list)
    for (flag, variant), ratings in sorted(per_variant.items()):
        by_flag[flag].append(summarise(ratings, half, flag=flag, variant=variant))
    for summaries in by_flag.values():
        control = _control(summaries)
        drops += [_drop("variant", s, control, level) for s in summaries if s is not control]
    return [drop for drop in drops if drop is not None]


def _control(summaries: Sequence[RatingSummary]) -> RatingSummary:
    """The flag's control variant by name, else its most rated one."""
    for name in CONTROL_VARIANTS:
        for summary in summaries:
            if summary.variant == name:
                return summary
    return max(summaries, key=lambda summary: (summary.count, summary.variant or ""))


def _drop(
    kind: str, candidate: RatingSummary, baseline: RatingSummary, level: float
) -> RatingDrop | None:
    """A drop when the candidate's interval lies wholly below the baseline's (both at
    half the level)."""
    if candidate.high is None or baseline.low is None or candidate.high >= baseline.low:
        return None
    name = candidate.release_id or f"{candidate.flag}={candidate.variant}"
    base = baseline.release_id or f"{baseline.flag}={baseline.variant}"
    detail = (
        f"{name} is rated {candidate.mean:.2f} ({candidate.count} ratings), {base} "
        f"{baseline.mean:.2f} ({baseline.count}): at most {candidate.high:.2f} against at "
        f"least {baseline.low:.2f} (confidence sequences, level {level})"
    )
    return RatingDrop(kind, candidate, baseline, level, detail)


def environment_feedback(
    project: Project,
    store: Store,
    environment: str,
    *,
    release_id: str | None = None,
    with_themes: bool = False,
    latest: int = 20,
) -> FeedbackReport:
    """`report` for a declared environment (NotFoundError otherwise): what the CLI, the
    API and the UI show."""
    from conveyor.service.environments import environment_spec

    environment_spec(project, environment)
    return report(store, environment, release_id=release_id, with_themes=with_themes, latest=latest)


def feedback_page(
    project: Project,
    store: Store,
    environment: str,
    *,
    release_id: str | None = None,
    limit: int | None = None,
    cursor: str | None = None,
) -> Page[Feedback]:
    """The environment's posts, newest first, a keyset page at a time (the API's list)."""
    from conveyor.service.environments import environment_spec
    from conveyor.service.pages import clamp_limit, decode_cursor, page_of

    environment_spec(project, environment)
    ingest(store, environment)
    size = clamp_limit(limit)
    items = feedback_items(
        store,
        environment,
        release_id=release_id,
        before_id=decode_cursor(cursor),
        limit=size + 1,
    )
    return page_of(items, size, lambda item: item.id)


def watch_consumer(project: Project, store: Store, environment: str, now: float) -> None:
    """The continuous watch's consumer (observe/watch.py CONSUMERS): posts reach the store
    (and the live views, as `feedback.received` events) while the watch runs."""
    ingest(store, environment, router_folder(project.state_dir, environment))
