"""Ratings of releases and flag variants: summaries with an anytime-valid interval, and
the rating drop (a release below the one before it, a variant below its flag's control)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from conveyor.deploy.routers.feedback_intake import MAX_RATING, MIN_RATING
from conveyor.observe.rating_sequence import rating_interval

LEVEL = 0.05  # the confidence sequences' error rate
CONTROL_VARIANTS = ("control", "off", "baseline")


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
