"""The `business:` section of an environment: what loads, and the errors a user sees."""

from __future__ import annotations

import pytest

from conveyor.errors import SpecError
from conveyor.spec.loader import parse_pipeline
from conveyor.steps.registry import STEP_PARAMS

HEAD = "version: 1\njobs:\n  build: {run: make}\nenvironments:\n  production:\n    business:\n"
GOOD = """\
      metrics:
        orders: {counter: shop_orders_total}
        checkouts: {counter: shop_checkouts_started_total}
      ratios:
        conversion: {numerator: orders, denominator: checkouts}
      guardrails:
        - {ratio: conversion, max_drop: 5%}
"""


def _load(business: str) -> object:
    return parse_pipeline(HEAD + business, "conveyor.yml", steps=STEP_PARAMS)


def _error(business: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        _load(business)
    return caught.value


def test_metrics_ratios_and_a_guardrail_load() -> None:
    text = HEAD + GOOD
    loaded = parse_pipeline(text, "conveyor.yml", steps=STEP_PARAMS)
    business = loaded.pipeline.environments["production"].business
    assert business is not None
    assert business.metrics["orders"].counter == "shop_orders_total"
    assert business.ratios["conversion"].denominator == "checkouts"
    rail = business.guardrails[0]
    assert (rail.ratio, rail.max_drop, rail.min_count, rail.level) == ("conversion", 0.05, 20, 0.05)
    assert (business.metrics_path, business.variant_label, business.control_variant) == (
        "/metrics",
        "variant",
        "off",
    )


@pytest.mark.parametrize(
    ("broken", "fragment", "key_path", "line"),
    [
        (
            GOOD.replace("numerator: orders", "numerator: order"),
            "ratio 'conversion': numerator 'order' is not a metric (metrics: orders, checkouts)",
            "environments.production.business.ratios",
            10,
        ),
        (
            GOOD.replace("{ratio: conversion,", "{ratio: conversions,"),
            "'conversions' is not a ratio (ratios: conversion)",
            "environments.production.business.guardrails",
            13,
        ),
        (
            GOOD.replace("max_drop: 5%", "max_drop: five"),
            "'five' is not a percentage such as 5%",
            "environments.production.business.guardrails[0].max_drop",
            13,
        ),
        (
            GOOD.replace("max_drop: 5%", "max_drop: 150%"),
            "less than 1",
            "environments.production.business.guardrails[0].max_drop",
            13,
        ),
        (
            GOOD.replace("shop_orders_total", "shop-orders"),
            "'shop-orders' is not a Prometheus metric name",
            "environments.production.business.metrics.orders.counter",
            8,
        ),
        (
            GOOD.replace("denominator: checkouts}", "denominator: orders}"),
            "numerator and denominator are the same",
            "environments.production.business.ratios",
            10,
        ),
    ],
)
def test_bad_values_are_named_by_file_line_and_key(
    broken: str, fragment: str, key_path: str, line: int
) -> None:
    error = _error(broken)
    assert fragment in error.message
    assert error.key_path == key_path
    assert error.line == line
