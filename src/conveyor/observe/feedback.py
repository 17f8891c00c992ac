"""User feedback per release and per flag variant (docs/monitoring.md, "User feedback").

The environment's router takes the posts (deploy/routers/feedback_intake.py) and spools
them in its folder; `ingest` (feedback_spool.py) moves them into the store, and every
read ingests first.

Ratings are summarised with an anytime-valid confidence sequence for a bounded mean
(empirical Bernstein, rating_sequence.py), so they can be looked at as often as one
likes; a release (or a flag variant) whose sequence lies wholly below its baseline's (the
release before it, or the flag's control variant) is a rating drop: `rating_drops`
(feedback_ratings.py). Themes: feedback_themes.py.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import sqlalchemy as sa

from conveyor.observe.feedback_ratings import (
    LEVEL,
    RatingDrop,
    RatingSummary,
    drops_between,
    release_summaries,
    variant_summaries,
)
from conveyor.observe.feedback_spool import ingest, router_answers, router_folder, spooled
from conveyor.observe.feedback_themes import Themes, themes
from conveyor.store.db import read_transaction
from conveyor.store.schema import feedback as feedback_table
from conveyor.store.store import Store

if TYPE_CHECKING:
    from conveyor.service.pages import Page
    from conveyor.service.project import Project

__all__ = [
    "Feedback",
    "FeedbackReport",
    "RatingDrop",
    "RatingSummary",
    "environment_feedback",
    "feedback_items",
    "feedback_page",
    "ingest",
    "rating_drops",
    "report",
    "router_folder",
    "spooled",
    "watch_consumer",
]

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
class FeedbackReport:
    environment: str
    count: int
    releases: list[RatingSummary]
    variants: list[RatingSummary]
    drops: list[RatingDrop]
    themes: Themes | None = None
    latest: list[Feedback] = field(default_factory=list)
    # The router's answers to posts since it started, by status (floods, oversized
    # posts...): None when it was not asked or did not answer.
    router_answers: dict[str, int] | None = None


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

    def code_of(release: str | None) -> str | None:
        return same_code.get(release or "", release)

    posted = feedback_items(store, environment, limit=MAX_REPORTED)
    if release_id is not None:
        posted = [item for item in posted if code_of(item.release_id) == code_of(release_id)]
    items = [replace(item, release_id=code_of(item.release_id)) for item in posted]
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
        latest=posted[:latest],  # as posted: the release that served each
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
    found = report(
        store, environment, release_id=release_id, with_themes=with_themes, latest=latest
    )
    return replace(found, router_answers=router_answers(store, environment))


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
