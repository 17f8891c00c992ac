"""`environments.<name>.slos`: defaults, and bad values reported at file:line with their key."""

from __future__ import annotations

from textwrap import dedent, indent

import pytest

from conveyor.deploy.routers.proxy import LATENCY_BUCKETS
from conveyor.errors import SpecError
from conveyor.spec.environments import Environment
from conveyor.spec.loader import parse_pipeline
from conveyor.spec.slo import LATENCY_BOUNDS, SloKind
from conveyor.steps.registry import STEP_PARAMS

HEAD = "version: 1\njobs:\n  build: {run: make}\nenvironments:\n  production:\n    slos:\n"


def _environment(slos: str) -> Environment:
    text = HEAD + indent(dedent(slos), " " * 6)
    return parse_pipeline(text, "conveyor.yml", steps=STEP_PARAMS).pipeline.environments[
        "production"
    ]


def _errors(slos: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        _environment(slos)
    return [str(problem) for problem in caught.value.problems]


def test_an_slo_is_named_after_its_kind_over_28_days_unscaled() -> None:
    environment = _environment(
        """\
              - kind: availability
                objective: 99.5
              - name: checkout-fast
                kind: latency
                threshold: 250ms
                objective: 99
                window: 30d
                time_scale: 3600
        """
    )
    availability, latency = environment.slos
    assert (availability.name, availability.kind, availability.window) == (
        "availability",
        SloKind.AVAILABILITY,
        28 * 86400,
    )
    assert availability.time_scale == 1 and availability.threshold is None
    assert availability.budget == pytest.approx(0.005)
    assert (latency.name, latency.threshold, latency.window) == ("checkout-fast", 0.25, 30 * 86400)
    assert latency.scaled_window == 30 * 86400 / 3600


def test_an_environment_has_no_slo_by_default() -> None:
    assert Environment().slos == []


def test_the_latency_bounds_are_the_routers_histogram() -> None:
    assert LATENCY_BOUNDS == LATENCY_BUCKETS


@pytest.mark.parametrize(
    ("slo", "expected"),
    [
        (
            "- {kind: availability, objective: 100}",
            "conveyor.yml:7:41: environments.production.slos[0].objective: must be less than 100",
        ),
        (
            "- {kind: availability, objective: nine}",
            "conveyor.yml:7:41: environments.production.slos[0].objective: expected a number, "
            "got the string 'nine'",
        ),
        (
            "- {kind: availabilty, objective: 99}",
            "conveyor.yml:7:16: environments.production.slos[0].kind: must be 'availability' or "
            "'latency'",
        ),
        (
            "- {kind: latency, objective: 99, threshold: 300ms}",
            "conveyor.yml:7:9: environments.production.slos[0]: threshold 300ms is not a bound "
            "of the router's latency histogram: use one of 5ms, 10ms, 25ms, 50ms, 100ms, 250ms,",
        ),
        (
            "- {kind: latency, objective: 99}",
            "conveyor.yml:7:9: environments.production.slos[0]: a latency SLO needs a `threshold`",
        ),
        (
            "- {kind: availability, objective: 99, threshold: 1s}",
            "conveyor.yml:7:9: environments.production.slos[0]: `threshold` is for latency SLOs",
        ),
        (
            "- {kind: availability, objective: 99, window: 1d}",
            "conveyor.yml:7:9: environments.production.slos[0]: the rolling window must be at "
            "least 3d",
        ),
        (
            "- {kind: availability, objective: 99, window: soon}",
            "conveyor.yml:7:53: environments.production.slos[0].window: invalid duration 'soon'",
        ),
        (
            "- {kind: availability, objective: 99, time_scale: 0.5}",
            "conveyor.yml:7:57: environments.production.slos[0].time_scale: must be greater "
            "than or equal to 1",
        ),
        (
            "- {kind: availability, objective: 99, name: Avail}",
            "conveyor.yml:7:51: environments.production.slos[0].name: invalid SLO name 'Avail'",
        ),
        (
            "- {kind: availability, objective: 99, objectiv: 9}",
            "conveyor.yml:7:45: environments.production.slos[0].objectiv: unknown key 'objectiv'",
        ),
    ],
)
def test_a_bad_value_is_an_error_at_its_line_and_key(slo: str, expected: str) -> None:
    [error] = _errors(slo + "\n")
    assert error.startswith(expected), error


def test_two_slos_of_one_name_are_an_error() -> None:
    [error] = _errors(
        """\
              - {kind: availability, objective: 99}
              - {kind: availability, objective: 99.9, window: 30d}
        """
    )
    assert error.startswith("conveyor.yml:7:7: environments.production.slos: two SLOs are named")
    assert "'availability'" in error
