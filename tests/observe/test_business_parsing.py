"""Reading business counters: the exposition per release and variant, and what resets,
vanished counters and silent replicas add (never a wrong figure)."""

from __future__ import annotations

import pytest

from conveyor.observe.business import (
    Outcome,
    Point,
    SeriesKey,
    Tracker,
    parse_exposition,
    step_from,
)
from conveyor.spec.business import Business

BUSINESS = Business.model_validate(
    {
        "metrics": {
            "orders": {"counter": "shop_orders_total"},
            "checkouts": {"counter": "shop_checkouts_started"},
        },
        "ratios": {"conversion": {"numerator": "orders", "denominator": "checkouts"}},
    }
)
TEXT = """\
# HELP shop_orders_total Orders placed.
# TYPE shop_orders_total counter
shop_orders_total{flag="one-page-checkout",variant="on"} 7.0
shop_orders_total{flag="one-page-checkout",variant="off"} 3.0
shop_orders_created{flag="one-page-checkout",variant="on"} 1.7e9
# HELP shop_checkouts_started_total Checkouts started.
# TYPE shop_checkouts_started_total counter
shop_checkouts_started_total{flag="one-page-checkout",variant="on"} 10.0
shop_checkouts_started_total{flag="one-page-checkout",variant="off"} 12.0
shop_checkouts_started_total{source="api"} 1.0
# TYPE shop_http_requests_total counter
shop_http_requests_total{route="/"} 99.0
"""


def test_totals_and_variants_are_read_from_the_exposition() -> None:
    found = parse_exposition(TEXT, BUSINESS)
    assert found[SeriesKey("orders")] == 10
    assert found[SeriesKey("checkouts")] == 23  # every label set, the unlabelled one too
    assert found[SeriesKey("orders", "one-page-checkout", "on")] == 7
    assert found[SeriesKey("checkouts", "one-page-checkout", "off")] == 12
    assert len(found) == 6  # no _created sample, no other counter


def test_a_declared_family_without_children_counts_zero() -> None:
    text = "# HELP shop_orders_total x\n# TYPE shop_orders_total counter\n"
    assert parse_exposition(text, BUSINESS) == {SeriesKey("orders"): 0.0}


def test_text_that_is_not_prometheus_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_exposition('shop_orders_total{variant="on" 3\n', BUSINESS)


def point(value: float | None, restarts: int = 0, outcome: Outcome = Outcome.OK) -> Point:
    return Point("r1", "127.0.0.1:9", restarts, SeriesKey("orders"), value, outcome, 0.0)


@pytest.mark.parametrize(
    ("previous", "current", "increase", "outcome"),
    [
        (None, point(5), 5, Outcome.FIRST),  # a new replica counted since it started
        (point(5), point(8), 3, Outcome.OK),
        (point(8), point(2), 2, Outcome.RESET),  # went down: restarted, counted from zero
        (point(8, restarts=0), point(9, restarts=1), 9, Outcome.RESET),  # restarted and grew
        (point(8), point(None, outcome=Outcome.MISSING), 0, Outcome.MISSING),
        (point(8), point(None, outcome=Outcome.UNREACHABLE), 0, Outcome.UNREACHABLE),
    ],
)
def test_what_each_scrape_adds(
    previous: Point | None, current: Point, increase: float, outcome: Outcome
) -> None:
    step = step_from(previous, current)
    assert (step.increase, step.outcome) == (increase, outcome)


def test_a_vanished_counter_adds_nothing_and_comes_back_from_its_last_value() -> None:
    tracker = Tracker()
    tracker.zero([point(10)])
    added, noted = tracker.add([point(None, outcome=Outcome.MISSING)])
    assert added == {("r1", SeriesKey("orders")): 0.0}
    assert [n.outcome for n in noted] == [Outcome.MISSING]
    assert "answered without the counter" in noted[0].describe()
    added, noted = tracker.add([point(14)])
    assert added == {("r1", SeriesKey("orders")): 4.0} and noted == []
    added, noted = tracker.add([point(3)])
    assert added == {("r1", SeriesKey("orders")): 3.0}
    assert "restarted: counted again from zero" in noted[0].describe()
