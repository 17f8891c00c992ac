"""An anytime-valid confidence sequence for a mean rating: the predictable plug-in
empirical-Bernstein sequence of Waudby-Smith and Ramdas (2023, "Estimating means of
bounded random variables by betting", Theorem 2).

Ratings are bounded (1 to 5, rescaled to [0, 1]), so no distribution is assumed. The
sequence adapts to the ratings' variance (users who agree give a narrow interval), holds
at every count at once with probability at least 1 - level (Ville's inequality), so it
may be looked at after every new rating, and the running intersection of its intervals
is valid too. The ratings are taken in arrival order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

LAMBDA_CAP = 0.75  # the paper's c (1/2 or 3/4): bets bounded away from 1


def psi(bet: float) -> float:
    """psi_E(lambda) = (-log(1 - lambda) - lambda) / 4."""
    return (-math.log1p(-bet) - bet) / 4


def unit_interval(values: Sequence[float], level: float) -> tuple[float, float]:
    """The running intersection of the sequence's intervals for values in [0, 1]."""
    log_term = math.log(2 / level)
    mean_hat, var_hat = 0.5, 0.25  # the predictable estimates before any value
    sum_x = sum_sq = 0.0
    bets = weighted = penalty = 0.0
    low, high = 0.0, 1.0
    for t, x in enumerate(values, start=1):
        bet = min(math.sqrt(2 * log_term / (var_hat * t * math.log(1 + t))), LAMBDA_CAP)
        bets += bet
        weighted += bet * x
        penalty += 4 * (x - mean_hat) ** 2 * psi(bet)
        centre, radius = weighted / bets, (log_term + penalty) / bets
        low, high = max(low, centre - radius), min(high, centre + radius)
        sum_x += x
        mean_hat = (0.5 + sum_x) / (t + 1)
        sum_sq += (x - mean_hat) ** 2
        var_hat = (0.25 + sum_sq) / (t + 1)
    if low > high:  # only when the sequence failed (probability <= level): say nothing
        return 0.0, 1.0
    return low, high


def rating_interval(
    ratings: Sequence[int], level: float, lowest: int = 1, highest: int = 5
) -> tuple[float, float]:
    """The interval on the mean rating, in ratings, for ratings in arrival order."""
    span = highest - lowest
    low, high = unit_interval([(rating - lowest) / span for rating in ratings], level)
    return lowest + low * span, lowest + high * span
