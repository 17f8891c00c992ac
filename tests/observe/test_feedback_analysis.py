"""Feedback analysis without processes: ingesting a spool (damaged lines included), the
confidence sequences, the rating-drop signal, the themes of a fixed corpus, and the
intake's rate limits on a fake clock."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from conveyor.deploy.routers.feedback_intake import (
    FeedbackIntake,
    FeedbackLimits,
    Rejected,
    TokenBuckets,
)
from conveyor.observe import feedback
from conveyor.observe.feedback_themes import terms, themes
from conveyor.observe.rating_sequence import rating_interval
from conveyor.store.store import Store
from observe import feedback_data
from observe.feedback_data import posts

ENV = "production"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "state") as opened:
        yield opened


def register(store: Store, *releases: str) -> None:
    for release in releases:
        store.ledger.releases.register(ENV, release, "shop", f"sha256:{release}", [])
        time.sleep(0.002)  # created_at orders them


def spool(store: Store, posts: Sequence[dict[str, object]], raw: Sequence[bytes] = ()) -> Path:
    return feedback_data.spool(store.state_dir, ENV, posts, raw)


def test_ingesting_keeps_well_formed_posts_once_and_skips_damaged_lines(store: Store) -> None:
    register(store, "v1")
    good = posts("v1", [5, 4])
    damaged = [
        b"{not json",
        b"[1, 2]",
        json.dumps(good[0] | {"id": "other", "rating": 9}).encode(),
        json.dumps(good[0] | {"id": "x y"}).encode(),  # not an id the router makes
        json.dumps(good[0] | {"id": "third", "release_id": 7}).encode(),
        json.dumps(good[0] | {"id": "fourth", "ts": "now"}).encode(),
    ]
    spool(store, good, damaged)
    assert feedback.ingest(store, ENV) == 2
    spool(store, good)  # the router's rotation can show a post twice: kept once
    assert feedback.ingest(store, ENV) == 0
    assert sorted(item.rating for item in feedback.feedback_items(store, ENV)) == [4, 5]


def test_the_confidence_sequence_covers_the_mean_at_every_count() -> None:
    """Anytime-valid: over whole sequences, the true mean leaves the interval at some
    count in at most about `level` of them."""
    rng = random.Random(7)
    weights = [0.1, 0.1, 0.2, 0.3, 0.3]
    truth = sum(rating * weight for rating, weight in zip(range(1, 6), weights, strict=True))
    misses = 0
    for _ in range(200):
        ratings = rng.choices(range(1, 6), weights, k=200)
        # The running intersection at the end holds iff every interval held.
        low, high = rating_interval(ratings, 0.05)
        misses += not low <= truth <= high
    assert misses <= 10


def test_the_interval_narrows_with_more_ratings_and_with_agreement() -> None:
    rng = random.Random(5)
    few, many = rng.choices([3, 4, 5], k=30), rng.choices([3, 4, 5], k=300)
    width = [high - low for low, high in (rating_interval(r, 0.05) for r in (few, many))]
    assert width[1] < width[0] / 2
    agreed = rating_interval([4] * 99, 0.05)
    spread = rating_interval([1, 5, 3] * 33, 0.05)
    assert agreed[1] - agreed[0] < (spread[1] - spread[0]) / 2
    assert agreed[0] <= 4 <= agreed[1] and spread[0] <= 3 <= spread[1]


def test_a_release_rated_well_below_the_one_before_is_a_rating_drop(store: Store) -> None:
    register(store, "v1", "v2", "v3")
    rng = random.Random(1)
    spool(store, posts("v1", [rng.choice([4, 5, 5]) for _ in range(40)]))
    spool(store, posts("v2", [rng.choice([1, 2, 2, 3]) for _ in range(40)]))
    spool(store, posts("v3", [2, 5, 4]))  # too few to say anything
    [drop] = feedback.rating_drops(store, ENV)
    assert drop.kind == "release"
    assert drop.candidate.release_id == "v2" and drop.baseline.release_id == "v1"
    assert drop.candidate.high is not None and drop.baseline.low is not None
    assert drop.candidate.high < drop.baseline.low
    assert "v2 is rated" in drop.detail


def test_a_small_or_no_difference_is_not_a_drop(store: Store) -> None:
    register(store, "v1", "v2")
    spool(store, posts("v1", [5, 5, 5]))
    spool(store, posts("v2", [1, 1, 1]))  # a big gap, but three ratings each
    assert feedback.rating_drops(store, ENV) == []
    summary = feedback.report(store, ENV)
    assert [(s.release_id, s.count, s.mean) for s in summary.releases] == [
        ("v1", 3, 5.0),
        ("v2", 3, 1.0),
    ]


def test_a_variant_rated_below_its_flags_control_is_a_rating_drop(store: Store) -> None:
    from conveyor.flags import Flag, FlagLedger

    register(store, "v1")
    flag = Flag.model_validate(
        {
            "name": "checkout",
            "enabled": True,
            "variants": [{"name": "control", "weight": 1}, {"name": "one-page", "weight": 1}],
        }
    )
    FlagLedger(store.engine).define(ENV, flag)
    spool(store, posts("v1", [5, 4] * 20, {"checkout": "control"}))
    spool(store, posts("v1", [1, 2] * 20, {"checkout": "one-page"}))
    [drop] = feedback.rating_drops(store, ENV)
    assert drop.kind == "variant"
    assert (drop.candidate.flag, drop.candidate.variant) == ("checkout", "one-page")
    assert drop.baseline.variant == "control"


CORPUS = [
    (1, "Checkout is so slow, I gave up"),
    (2, "The checkout page is slow and the payment failed"),
    (1, "Payment failed twice. Checkout slow!"),
    (2, "checkout slow on my phone"),
    (1, "payment failed again"),
    (2, "search results are wrong"),
    (1, "checkout slow, payment failed, not coming back"),
    (2, "Why is the checkout slow today"),
    (1, "my payment failed"),
    (2, "pictures do not load"),
    (5, "Great prices and fast delivery"),
    (4, "fast delivery, great selection"),
    (5, "Love the new catalogue, great prices"),
    (4, "Checkout was fine, great prices"),
    (5, "fast delivery"),
    (3, "the catalogue is ok"),
    (4, "nice search"),
    (5, "great shop"),
    (4, "Quick checkout, good prices"),
    (3, "delivery took a while"),
    (5, "friendly support"),
    (4, "easy to find things"),
]


def test_themes_of_low_ratings_are_the_terms_over_represented_in_them() -> None:
    found = themes(CORPUS)
    low = [theme.term for theme in found.low]
    assert "checkout slow" in low and "payment failed" in low
    assert not {"great", "prices", "fast delivery", "catalogue"} & set(low)
    assert found.low_texts == 10 and found.other_texts == 12
    frequent = dict(found.frequent)
    assert frequent["checkout"] == 8 and frequent["great"] == 5  # the top 10 only


def test_tokens_drop_stop_words_and_count_each_text_once() -> None:
    assert terms("The checkout, THE checkout!") == {"checkout", "checkout checkout"}
    assert terms("I don\u2019t like it") == set()  # stop words, typographic apostrophe too


def test_the_intake_limits_each_address_and_everyone_together() -> None:
    intake = FeedbackIntake(
        Path("/nonexistent"), FeedbackLimits(per_address=2, overall_per_second=1.0)
    )
    intake.admit("10.0.0.1", now=0.0)
    intake.admit("10.0.0.1", now=0.0)
    with pytest.raises(Rejected) as refused:
        intake.admit("10.0.0.1", now=0.0)
    assert refused.value.status == 429 and refused.value.retry_after == pytest.approx(30.0)
    with pytest.raises(Rejected) as flood:  # the overall burst (2 s: 2 posts) is spent
        intake.admit("10.0.0.2", now=0.0)
    assert flood.value.status == 503
    intake.admit("10.0.0.3", now=1.0)


def test_the_rate_limiter_holds_a_bounded_number_of_addresses() -> None:
    buckets = TokenBuckets(burst=1, per_second=0.01, capacity=100)
    for index in range(10_000):
        buckets.take(f"10.0.{index // 256}.{index % 256}", now=float(index) / 1000)
    assert len(buckets.buckets) == 100


def test_a_spool_that_cannot_be_written_refuses_the_post_with_503(tmp_path: Path) -> None:
    intake = FeedbackIntake(tmp_path / "gone")  # the router's folder was removed
    with pytest.raises(Rejected) as refused:
        intake.record({"rating": 3, "text": "", "variants": {}}, "v1", "sticky")
    assert refused.value.status == 503


def test_the_environments_feedback_origins_reach_the_router(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from conveyor.deploy.routers.base import RouterSite
    from conveyor.deploy.routers.builtin import from_site
    from conveyor.spec.environments import Environment

    spec = Environment.model_validate({"feedback_origins": ["https://shop.example"]})
    site = RouterSite(tmp_path, 1, 2, feedback_origins=tuple(spec.feedback_origins))
    assert "--feedback-origin=https://shop.example" in from_site(site).feedback.arguments()
    with pytest.raises(ValidationError):
        Environment.model_validate({"feedback_origins": ["shop.example/path"]})


def test_a_baselines_feedback_counts_for_its_code_and_is_listed_as_posted(
    store: Store,
) -> None:
    store.ledger.releases.register(ENV, "v1", "shop", "sha256:one", [])
    store.ledger.releases.register(ENV, "v1-baseline", "shop", "sha256:one", [])
    spool(store, posts("v1", [5]) + posts("v1-baseline", [3]))
    summary = feedback.report(store, ENV, release_id="v1-baseline")
    assert [(s.release_id, s.count, s.mean) for s in summary.releases] == [("v1", 2, 4.0)]
    assert sorted(item.release_id or "" for item in summary.latest) == ["v1", "v1-baseline"]


def test_ingested_feedback_is_live_in_the_environments_topic(store: Store) -> None:
    from conveyor.server.events import topics_of
    from conveyor.store.records import EventKind

    register(store, "v1")
    spool(store, posts("v1", [4, 2]))
    assert feedback.ingest(store, ENV) == 2
    [event] = [e for e in store.events() if e.kind == EventKind.FEEDBACK_RECEIVED]
    assert event.data["releases"] == {"v1": {"count": 2, "mean": 3.0}}
    assert f"environment:{ENV}" in topics_of(event)
