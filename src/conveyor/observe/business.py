"""Business counters per release and per flag variant, read from the service itself.

Each release is its own processes: its replicas' metrics endpoints (`business.metrics_path`,
Prometheus text) are scraped, parsed with prometheus_client's parser, and summed over the
replicas. Per flag variant, the series are grouped by the labels `flag` (the flag's key)
and `variant` (the variant that served the user; `business.flag_label` and
`variant_label` rename them): `shop_orders_total{flag="one-page-checkout",variant="on"}`.

Counters are cumulative per process, so figures are increases between scrapes of the
same replica, with Prometheus's rule for resets: a value that went down, or a replica
whose restart count changed, started again from zero, so its value is its increase
(what it counted between the last scrape and its restart is lost, and said so). A series
or a replica that does not answer adds nothing and is recorded; it is never read as zero.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from conveyor.analysis.business import BusinessGuard, BusinessReading, RatioRail
from conveyor.deploy.model import ReplicaStatus
from conveyor.deploy.runtimes.base import Runtime
from conveyor.spec.business import Business
from conveyor.store.db import write_transaction
from conveyor.store.schema import business_samples

SCRAPE_TIMEOUT = 2.0  # seconds per replica
TOTAL = ("", "")  # the (flag, variant) of a release's total over every label set


class Outcome(StrEnum):
    OK = "ok"
    FIRST = "first"  # a replica first seen: its value is what it counted since it started
    RESET = "reset"  # restarted (value down, or restart count changed): counted from zero
    MISSING = "missing"  # the replica answered without this counter
    UNREACHABLE = "unreachable"  # the replica did not answer, or not in Prometheus text


@dataclass(frozen=True)
class SeriesKey:
    metric: str  # the name in conveyor.yml
    flag: str = ""
    variant: str = ""


@dataclass(frozen=True)
class Point:
    """One scrape of one series on one replica (value None: not read, `outcome` says why)."""

    release_id: str
    replica: str
    restarts: int
    key: SeriesKey
    value: float | None
    outcome: Outcome
    ts: float


# --- parsing ----------------------------------------------------------------------------


def parse_exposition(text: str, business: Business) -> dict[SeriesKey, float]:
    """The business counters in one replica's exposition: each metric's total over all
    label sets, and its value per (flag, variant). Raises ValueError on text that is not
    Prometheus's format."""
    wanted = {_sample_names(spec.counter): name for name, spec in business.metrics.items()}
    found: dict[SeriesKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            metric = next((m for names, m in wanted.items() if sample.name in names), None)
            if metric is None:
                continue
            total = SeriesKey(metric)
            found[total] = found.get(total, 0.0) + sample.value
            variant = sample.labels.get(business.variant_label)
            if variant is not None:
                key = SeriesKey(metric, sample.labels.get(business.flag_label, ""), variant)
                found[key] = found.get(key, 0.0) + sample.value
        for names, metric in wanted.items():  # a family with no children yet counts zero
            if family.name in names or f"{family.name}_total" in names:
                found.setdefault(SeriesKey(metric), 0.0)
    return found


def _sample_names(counter: str) -> frozenset[str]:
    """`shop_orders_total` is `shop_orders_total`; `shop_orders` either name."""
    if counter.endswith("_total"):
        return frozenset({counter})
    return frozenset({counter, f"{counter}_total"})


# --- scraping ---------------------------------------------------------------------------


def scrape_release(
    client: httpx.Client,
    business: Business,
    release_id: str,
    replicas: Sequence[ReplicaStatus],
    now: float,
) -> list[Point]:
    """One point per series per replica; a replica that fails gives one UNREACHABLE
    point per metric."""
    points: list[Point] = []
    for replica in replicas:
        url = f"http://{replica.address}{business.metrics_path}"
        try:
            answer = client.get(url, timeout=SCRAPE_TIMEOUT)
            answer.raise_for_status()
            found = parse_exposition(answer.text, business)
        except (httpx.HTTPError, ValueError):
            found = None
        for metric in business.metrics:
            if found is None:
                key = SeriesKey(metric)
                points.append(
                    Point(
                        release_id,
                        replica.address,
                        replica.restarts,
                        key,
                        None,
                        Outcome.UNREACHABLE,
                        now,
                    )
                )
                continue
            if SeriesKey(metric) not in found:
                points.append(
                    Point(
                        release_id,
                        replica.address,
                        replica.restarts,
                        SeriesKey(metric),
                        None,
                        Outcome.MISSING,
                        now,
                    )
                )
        for key, value in (found or {}).items():
            points.append(
                Point(release_id, replica.address, replica.restarts, key, value, Outcome.OK, now)
            )
    return points


# --- increases ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    increase: float
    outcome: Outcome


def step_from(previous: Point | None, current: Point) -> Step:
    """What `current` adds to its series, after `previous` (the last point with a value
    of the same replica and series)."""
    if current.value is None:
        return Step(0.0, current.outcome)
    if previous is None or previous.value is None:
        return Step(current.value, Outcome.FIRST)
    if current.value < previous.value or current.restarts != previous.restarts:
        return Step(current.value, Outcome.RESET)
    return Step(current.value - previous.value, Outcome.OK)


@dataclass(frozen=True)
class Noted:
    """A point that was not an ordinary increase: shown with the figures."""

    release_id: str
    replica: str
    metric: str
    outcome: Outcome
    ts: float

    def describe(self) -> str:
        what = {
            Outcome.RESET: "restarted: counted again from zero (events between the last "
            "scrape and the restart are not counted)",
            Outcome.MISSING: "answered without the counter: nothing counted",
            Outcome.UNREACHABLE: "did not answer: nothing counted",
        }.get(self.outcome, self.outcome.value)
        return f"{self.release_id} replica {self.replica}, {self.metric}: {what}"


class Tracker:
    """The last point with a value per replica and series, and what each scrape adds."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str, SeriesKey], Point] = {}

    def zero(self, points: Iterable[Point]) -> None:
        """Take these values as already counted (a judged step starts from them)."""
        for point in points:
            if point.value is not None:
                self.last[(point.release_id, point.replica, point.key)] = point

    def add(
        self, points: Iterable[Point]
    ) -> tuple[dict[tuple[str, SeriesKey], float], list[Noted]]:
        """The increase per (release, series) and the points worth noting."""
        increases: dict[tuple[str, SeriesKey], float] = {}
        noted: list[Noted] = []
        for point in points:
            where = (point.release_id, point.replica, point.key)
            step = step_from(self.last.get(where), point)
            if point.value is not None:
                self.last[where] = point
            key = (point.release_id, point.key)
            increases[key] = increases.get(key, 0.0) + step.increase
            if step.outcome in (Outcome.RESET, Outcome.MISSING, Outcome.UNREACHABLE):
                noted.append(
                    Noted(point.release_id, point.replica, point.key.metric, step.outcome, point.ts)
                )
        return increases, noted


# --- the store ------------------------------------------------------------------------


def store_points(engine: sa.Engine, environment: str, points: Sequence[Point]) -> None:
    if not points:
        return
    rows = [
        {
            "environment": environment,
            "release_id": p.release_id,
            "replica": p.replica,
            "restarts": p.restarts,
            "metric": p.key.metric,
            "flag": p.key.flag,
            "variant": p.key.variant,
            "value": p.value,
            "outcome": p.outcome.value,
            "ts": p.ts,
        }
        for p in points
    ]
    with write_transaction(engine) as conn:
        conn.execute(sa.insert(business_samples), rows)


# --- sources for the judged steps -------------------------------------------------------


def rails_of(business: Business) -> list[RatioRail]:
    return [RatioRail(r.ratio, r.max_drop, r.min_count, r.level) for r in business.guardrails]


class _Source:
    """Scrapes the watched releases every interval and turns increases into ratios."""

    def __init__(
        self,
        business: Business,
        runtime: Runtime,
        environment: str,
        engine: sa.Engine | None,
    ) -> None:
        self.business = business
        self.runtime = runtime
        self.environment = environment
        self.engine = engine
        self.tracker = Tracker()

    def _scrape(self, release_ids: Iterable[str]) -> list[Point]:
        now = time.time()
        points: list[Point] = []
        running = set(self.runtime.releases())
        with httpx.Client() as client:  # one per scrape: nothing left open between steps
            for release_id in release_ids:
                if release_id in running:
                    replicas = self.runtime.status(release_id)
                    points += scrape_release(client, self.business, release_id, replicas, now)
        if self.engine is not None:
            store_points(self.engine, self.environment, points)
        return points

    def _ratios(self, totals: Mapping[str, float]) -> dict[str, tuple[int, int]]:
        return {
            name: (round(totals.get(r.numerator, 0.0)), round(totals.get(r.denominator, 0.0)))
            for name, r in self.business.ratios.items()
        }


class ReleaseSource(_Source):
    """Arms are releases (canary, baseline, stable): each release's totals."""

    arms: tuple[str, ...] = ()

    def start(self, arms: Sequence[str]) -> None:
        self.arms = tuple(arms)
        self.tracker.zero(self._scrape(self.arms))

    def read(self) -> BusinessReading:
        increases, noted = self.tracker.add(self._scrape(self.arms))
        per_arm = {}
        for arm in self.arms:
            totals = {
                k.metric: v
                for (rel, k), v in increases.items()
                if rel == arm and k.flag == "" and k.variant == ""
            }
            per_arm[arm] = self._ratios(totals)
        return BusinessReading(per_arm, tuple(n.describe() for n in noted))


class VariantSource(_Source):
    """Arms "on" and "off" of a flag on the live release: "off" is the control variant's
    series, "on" every other variant's."""

    def __init__(
        self,
        business: Business,
        runtime: Runtime,
        environment: str,
        engine: sa.Engine | None,
        *,
        flag: str,
        release_id: str,
    ) -> None:
        super().__init__(business, runtime, environment, engine)
        self.flag = flag
        self.release_id = release_id
        self.arms: tuple[str, ...] = ()

    def start(self, arms: Sequence[str]) -> None:
        self.arms = tuple(arms)
        self.tracker.zero(self._scrape([self.release_id]))

    def read(self) -> BusinessReading:
        increases, noted = self.tracker.add(self._scrape([self.release_id]))
        on: dict[str, float] = {}
        off: dict[str, float] = {}
        for (_release, key), value in increases.items():
            if key.flag != self.flag or key.variant == "":
                continue
            side = off if key.variant == self.business.control_variant else on
            side[key.metric] = side.get(key.metric, 0.0) + value
        canary, control = (*self.arms, "on", "off")[:2]
        per_arm = {canary: self._ratios(on), control: self._ratios(off)}
        return BusinessReading(per_arm, tuple(n.describe() for n in noted))


def release_guard(
    business: Business | None, runtime: Runtime, environment: str, engine: sa.Engine | None
) -> BusinessGuard | None:
    """A canary step's business guard, or None when the environment guards no ratio."""
    if business is None or not business.guardrails:
        return None
    return BusinessGuard(rails_of(business), ReleaseSource(business, runtime, environment, engine))


def variant_guard(
    business: Business | None,
    runtime: Runtime,
    environment: str,
    engine: sa.Engine | None,
    *,
    flag: str,
    live_release: str | None,
) -> BusinessGuard | None:
    """A flag release step's business guard (None without guardrails or a live release)."""
    if business is None or not business.guardrails or live_release is None:
        return None
    source = VariantSource(
        business, runtime, environment, engine, flag=flag, release_id=live_release
    )
    return BusinessGuard(rails_of(business), source)
