"""The rolling strategy's moves: add a ready replica or remove an old one, within limits."""

from __future__ import annotations

import pytest

from conveyor.deploy.rolling import Serving, next_move
from conveyor.spec.strategy import Rolling


def replay(replicas: int, limits: Rolling) -> list[tuple[int, int]]:
    """Every new replica ready from the start: the sequence of (new, old) serving."""
    serving, seen = Serving(old=replicas, new=0), []
    while serving.new < replicas or serving.old > 0:
        move = next_move(serving, replicas, replicas, limits)
        assert move is not None, serving
        if move == "add":
            serving.new += 1
        else:
            serving.old -= 1
        seen.append((serving.new, serving.old))
    return seen


@pytest.mark.parametrize(
    ("surge", "unavailable", "low", "high"),
    [(1, 0, 3, 4), (0, 1, 2, 3), (2, 1, 2, 5)],
)
def test_serving_replicas_stay_within_the_limits(
    surge: int, unavailable: int, low: int, high: int
) -> None:
    steps = replay(3, Rolling(max_surge=surge, max_unavailable=unavailable))
    assert steps[-1] == (3, 0)
    assert all(low <= new + old <= high for new, old in steps)


def test_no_move_while_no_new_replica_is_ready_and_none_may_be_unavailable() -> None:
    limits = Rolling(max_surge=1, max_unavailable=0)
    assert next_move(Serving(old=3, new=0), 0, 3, limits) is None
    assert next_move(Serving(old=3, new=0), 1, 3, limits) == "add"


def test_both_limits_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot both be 0"):
        Rolling(max_surge=0, max_unavailable=0)
