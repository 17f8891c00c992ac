"""`conveyor env business ENV`: each release's and each flag variant's business figures,
with confidence sequences, read from the stored scrapes (observe/business.py).

A release's figure is what its replicas counted since they started (the first scrape of
a replica counts its whole value; resets are counted from zero, and listed). Ratios are
shown with their anytime-valid confidence sequence, and each release (or variant) is
compared with the reference: a canary's baseline, else the live release (the control
variant for variants), as a ratio and a difference, each with its interval.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import httpx
import sqlalchemy as sa

from conveyor.analysis.eprocess import compare_proportions, proportion_interval
from conveyor.deploy.rollout import baseline_name
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.observe.business import Noted, Outcome, Point, SeriesKey, Tracker, scrape_release
from conveyor.observe.business import store_points as _store_points
from conveyor.service import environments as environment_service
from conveyor.service.environments import environment_spec
from conveyor.service.project import Project
from conveyor.spec.business import Business
from conveyor.spec.environments import Environment
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.schema import business_samples
from conveyor.store.store import Store

LEVEL = 0.05  # the confidence sequences shown
SERIES_POINTS = 60  # the newest cumulative points per release, for the trend
NOTES_SHOWN = 20


@dataclass(frozen=True)
class Bounds:
    low: float
    high: float | None


@dataclass(frozen=True)
class RatioFigure:
    name: str
    numerator: int
    denominator: int
    value: float | None  # None without denominator events
    interval: Bounds  # at `level`
    level: float
    consistent: bool = True  # False: more numerator than denominator events, not a rate


@dataclass(frozen=True)
class ComparisonFigure:
    """An arm's ratio against the reference's: each side's interval at level / 2."""

    ratio: str
    arm: str
    reference: str
    ratio_of_rates: Bounds
    difference: Bounds
    level: float


@dataclass(frozen=True)
class TrendPoint:
    ts: float
    metrics: dict[str, int]


@dataclass(frozen=True)
class ArmFigures:
    """A release (`flag` and `variant` empty) or a flag variant on the live release."""

    release_id: str
    state: str | None
    metrics: dict[str, int]
    ratios: list[RatioFigure]
    flag: str = ""
    variant: str = ""
    trend: list[TrendPoint] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BusinessView:
    environment: str
    reference_release: str | None
    releases: list[ArmFigures]
    release_comparisons: list[ComparisonFigure]
    variants: list[ArmFigures]
    variant_comparisons: list[ComparisonFigure]
    guardrails: list[dict[str, object]]
    sampled_at: float | None


def business_view(
    project: Project, store: Store, name: str, *, sample: bool = True
) -> BusinessView:
    """The figures of `name`; `sample` scrapes the running releases first (and stores it)."""
    spec = environment_spec(project, name)
    business = spec.business
    if business is None or not business.metrics:
        raise ConveyorError(
            f"{name} declares no business metrics",
            hint="add environments.<name>.business.metrics (docs/monitoring.md)",
        )
    record = store.ledger.environments.get(name)
    if record is None:
        raise NotFoundError(
            f"{name} has never been deployed", hint=f"`conveyor deploy {name} IMAGE` first"
        )
    states = {r.release_id: r.state.value for r in store.ledger.releases.of_environment(name)}
    sampled_at = None
    if sample:
        sampled_at = sample_environment(project, store, name, business, spec)
    rows = _points(store.engine, name)
    releases = _release_figures(rows, business, states)
    reference = _reference(record.live_release, states)
    live_rows = [p for p in rows if p.release_id == record.live_release]
    variants = _variant_figures(live_rows, business)
    return BusinessView(
        environment=name,
        reference_release=reference,
        releases=releases,
        release_comparisons=_comparisons(releases, reference, business, by_variant=False),
        variants=variants,
        variant_comparisons=_comparisons(
            variants, business.control_variant, business, by_variant=True
        ),
        guardrails=[rail.model_dump(mode="json") for rail in business.guardrails],
        sampled_at=sampled_at,
    )


def sample_environment(
    project: Project, store: Store, name: str, business: Business, spec: Environment | None = None
) -> float:
    """Scrape every running release of `name` once, into the store (`spec`: its
    environment, when already read)."""
    spec = spec or environment_spec(project, name)
    # Looked up at each call, not bound at import: the fake data plane of the tests
    # swaps the service's function, and a module imported meanwhile would keep the fake.
    runtime = environment_service.make_runtime(project, spec)
    running = set(runtime.releases())
    now = time.time()
    ours = [r.release_id for r in store.ledger.releases.of_environment(name)]
    points: list[Point] = []
    with httpx.Client() as client:
        for release_id in ours:
            if release_id in running:
                replicas = runtime.status(release_id)
                points += scrape_release(client, business, release_id, replicas, now)
    _store_points(store.engine, name, points)
    prune_points(store.engine, name, now - spec.samples.keep)
    return now


def prune_points(engine: sa.Engine, environment: str, before: float) -> None:
    """Drop scrapes older than the environment's sample retention (`samples.keep`). A
    replica's oldest kept scrape then counts its whole value, which is still what it
    counted since it started (less what it lost to a restart among the dropped ones)."""
    table = business_samples
    with write_transaction(engine) as conn:
        conn.execute(
            sa.delete(table).where(table.c.environment == environment, table.c.ts < before)
        )


def _points(engine: sa.Engine, environment: str) -> list[Point]:
    table = business_samples
    query = sa.select(table).where(table.c.environment == environment).order_by(table.c.id)
    with read_transaction(engine) as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Point(
            row["release_id"],
            row["replica"],
            row["restarts"],
            SeriesKey(row["metric"], row["flag"], row["variant"]),
            row["value"],
            Outcome(row["outcome"]),
            row["ts"],
        )
        for row in rows
    ]


def _reference(live: str | None, states: Mapping[str, str]) -> str | None:
    """A canary's baseline while one exists, else the live release."""
    if live is not None and baseline_name(live) in states:
        baseline = baseline_name(live)
        if states[baseline] in ("serving", "starting"):
            return baseline
    return live


def _replay(points: Sequence[Point]) -> tuple[list[tuple[Point, float]], list[Noted]]:
    """Every point with what it adds, in the order scraped."""
    tracker = Tracker()
    added: list[tuple[Point, float]] = []
    noted: list[Noted] = []
    for point in points:
        increases, notes = tracker.add([point])
        added.append((point, sum(increases.values())))
        noted += notes
    return added, noted


def _release_figures(
    points: Sequence[Point], business: Business, states: Mapping[str, str]
) -> list[ArmFigures]:
    totals = [p for p in points if p.key.flag == "" and p.key.variant == ""]
    added, noted = _replay(totals)
    per_release: dict[str, dict[str, float]] = {}
    trends: dict[str, list[TrendPoint]] = {}
    for point, increase in added:
        metrics = per_release.setdefault(point.release_id, dict.fromkeys(business.metrics, 0.0))
        metrics[point.key.metric] = metrics.get(point.key.metric, 0.0) + increase
        trend = trends.setdefault(point.release_id, [])
        snapshot = TrendPoint(point.ts, {k: round(v) for k, v in metrics.items()})
        if trend and trend[-1].ts == point.ts:
            trend[-1] = snapshot
        else:
            trend.append(snapshot)
    figures = []
    for release_id, metrics in per_release.items():
        counted = {k: round(v) for k, v in metrics.items()}
        notes = [n.describe() for n in noted if n.release_id == release_id][-NOTES_SHOWN:]
        figures.append(
            ArmFigures(
                release_id,
                states.get(release_id),
                counted,
                _ratios(counted, business),
                trend=trends[release_id][-SERIES_POINTS:],
                notes=notes,
            )
        )
    return figures


def _variant_figures(points: Sequence[Point], business: Business) -> list[ArmFigures]:
    labelled = [p for p in points if p.key.variant != ""]
    added, noted = _replay(labelled)
    per_variant: dict[tuple[str, str], dict[str, float]] = {}
    for point, increase in added:
        key = (point.key.flag, point.key.variant)
        metrics = per_variant.setdefault(key, dict.fromkeys(business.metrics, 0.0))
        metrics[point.key.metric] = metrics.get(point.key.metric, 0.0) + increase
    figures = []
    for (flag, variant), metrics in sorted(per_variant.items()):
        counted = {k: round(v) for k, v in metrics.items()}
        release_id = labelled[0].release_id if labelled else ""
        notes = [n.describe() for n in noted][-NOTES_SHOWN:]
        figures.append(
            ArmFigures(
                release_id,
                None,
                counted,
                _ratios(counted, business),
                flag=flag,
                variant=variant,
                notes=notes,
            )
        )
    return figures


def _ratios(metrics: Mapping[str, int], business: Business) -> list[RatioFigure]:
    figures = []
    for name, ratio in business.ratios.items():
        numerator, denominator = metrics.get(ratio.numerator, 0), metrics.get(ratio.denominator, 0)
        if numerator > denominator:
            figures.append(
                RatioFigure(name, numerator, denominator, None, Bounds(0.0, None), LEVEL, False)
            )
            continue
        interval = proportion_interval(numerator, denominator, LEVEL)
        value = numerator / denominator if denominator else None
        figures.append(
            RatioFigure(
                name, numerator, denominator, value, Bounds(interval.low, interval.high), LEVEL
            )
        )
    return figures


def _comparisons(
    arms: Sequence[ArmFigures], reference: str | None, business: Business, *, by_variant: bool
) -> list[ComparisonFigure]:
    found = []
    for flag in sorted({arm.flag for arm in arms}):
        group = [a for a in arms if a.flag == flag]
        base = next((a for a in group if _label(a, by_variant=by_variant) == reference), None)
        if base is None:
            continue
        for arm in group:
            if arm is base:
                continue
            for mine, theirs in zip(arm.ratios, base.ratios, strict=True):
                if not (mine.consistent and theirs.consistent):
                    continue
                if mine.denominator == 0 or theirs.denominator == 0:
                    continue
                compared = compare_proportions(
                    (mine.numerator, mine.denominator),
                    (theirs.numerator, theirs.denominator),
                    LEVEL,
                )
                name = f"{flag}:{arm.variant}" if by_variant else arm.release_id
                against = f"{flag}:{base.variant}" if by_variant else base.release_id
                found.append(
                    ComparisonFigure(
                        mine.name,
                        name,
                        against,
                        Bounds(compared.ratio.low, compared.ratio.high),
                        Bounds(compared.difference.low, compared.difference.high),
                        LEVEL,
                    )
                )
    return found


def _label(arm: ArmFigures, *, by_variant: bool) -> str:
    return arm.variant if by_variant else arm.release_id
