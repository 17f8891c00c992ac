"""Evaluating a flag for one context: pure, so the server, the CLI and the OpenFeature
provider give the same answer for the same definitions.

Stickiness is Unleash's: a context's bucket is MurmurHash3 (x86, 32 bit) of
`"{group}:{identity}"`, unsigned, modulo 100, plus 1; the group is the flag's name unless
the strategy names another. The same user always lands in the same bucket of a flag, and
buckets of different flags are independent. Variants hash with a second seed (Unleash's),
so who gets a variant does not depend on who got the rollout first.

The one impure case is documented behaviour: `random` stickiness, or `default` stickiness
with neither userId nor sessionId in the context, draws a fresh bucket per evaluation.
"""

from __future__ import annotations

import operator
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import mmh3
import semver

from conveyor_openfeature.model import (
    DEFAULT_STICKINESS,
    RANDOM_STICKINESS,
    Constraint,
    DefaultStrategy,
    Flag,
    Operator,
    RolloutStrategy,
    Segment,
    Strategy,
    UsersStrategy,
    Variant,
    parse_date,
    variant_stickiness,
)

Context = Mapping[str, object]

ROLLOUT_SEED = 0
VARIANT_SEED = 86028157  # Unleash's variant seed: variants independent of the rollout
BUCKETS = 100
CURRENT_TIME = "currentTime"  # a context field that defaults to the evaluation's time
_DEFAULT_IDENTITIES = ("userId", "sessionId")


class Reason(StrEnum):
    """Why a flag has its value; the names are OpenFeature's resolution reasons."""

    DISABLED = "DISABLED"  # the flag is off (or killed)
    STATIC = "STATIC"  # on for everyone
    TARGETING_MATCH = "TARGETING_MATCH"  # a user list, constraints or segments matched
    SPLIT = "SPLIT"  # the context's bucket is inside the rollout percentage
    DEFAULT = "DEFAULT"  # enabled, but no strategy matched this context


@dataclass(frozen=True)
class Evaluation:
    enabled: bool
    reason: Reason
    detail: str  # for people: which strategy decided and how
    variant: Variant | None = None
    strategy: int | None = None  # the index of the strategy that matched


def normalized_hash(
    group: str, identity: str, *, seed: int = ROLLOUT_SEED, modulus: int = BUCKETS
) -> int:
    """The bucket, 1..modulus, of `identity` in `group` (Unleash's normalizedHash)."""
    return mmh3.hash(f"{group}:{identity}", seed, signed=False) % modulus + 1


def evaluate(
    flag: Flag,
    context: Context,
    segments: Mapping[str, Segment] | None = None,
    *,
    now: datetime | None = None,
) -> Evaluation:
    """The flag's value for `context`: the first strategy that matches decides."""
    if not flag.enabled:
        return Evaluation(False, Reason.DISABLED, "the flag is off")
    if not flag.strategies:
        variant = choose_variant(flag.variants, flag.name, context)
        return Evaluation(True, Reason.STATIC, "on with no strategies: everyone", variant)
    moment = now or datetime.now(UTC)
    for index, strategy in enumerate(flag.strategies):
        matched = _match(flag.name, strategy, context, segments or {}, moment)
        if matched is not None:
            reason, detail = matched
            group = _group(flag.name, strategy)
            variants = strategy.variants or flag.variants
            variant = choose_variant(variants, group, context)
            return Evaluation(True, reason, f"strategy {index + 1}: {detail}", variant, index)
    return Evaluation(False, Reason.DEFAULT, "no strategy matched this context")


def choose_variant(variants: tuple[Variant, ...], group: str, context: Context) -> Variant | None:
    """The variant whose share of the total weight holds the context's variant bucket."""
    total = sum(variant.weight for variant in variants)
    if total == 0:
        return None
    identity = _identity(variant_stickiness(variants), context) or _random_identity()
    target = normalized_hash(group, identity, seed=VARIANT_SEED, modulus=total)
    reached = 0
    for variant in variants:
        reached += variant.weight
        if target <= reached:
            return variant
    return None  # unreachable: target <= total


def constraint_holds(constraint: Constraint, context: Context, now: datetime) -> bool:
    value = context.get(constraint.context_name)
    if value is None and constraint.context_name == CURRENT_TIME:
        value = now
    return _compare(constraint, value) != constraint.inverted


# --- strategies -------------------------------------------------------------------------


def _match(
    flag_name: str,
    strategy: Strategy,
    context: Context,
    segments: Mapping[str, Segment],
    now: datetime,
) -> tuple[Reason, str] | None:
    if not _targeting_holds(strategy, context, segments, now):
        return None
    targeted = Reason.TARGETING_MATCH if strategy.targeted else Reason.STATIC
    match strategy:
        case DefaultStrategy():
            return targeted, "default" + (" (targeted)" if strategy.targeted else "")
        case UsersStrategy():
            user = context.get(strategy.field)
            if user is None or _text(user) not in strategy.users:
                return None
            return Reason.TARGETING_MATCH, f"{strategy.field} {_text(user)} is listed"
        case RolloutStrategy():
            return _rollout(flag_name, strategy, context)


def _targeting_holds(
    strategy: Strategy, context: Context, segments: Mapping[str, Segment], now: datetime
) -> bool:
    """All the strategy's constraints, and all constraints of each of its segments."""
    constraints = list(strategy.constraints)
    for name in strategy.segments:
        segment = segments.get(name)
        if segment is None:
            return False  # a segment deleted under a flag enables no one
        constraints.extend(segment.constraints)
    return all(constraint_holds(constraint, context, now) for constraint in constraints)


def _rollout(
    flag_name: str, strategy: RolloutStrategy, context: Context
) -> tuple[Reason, str] | None:
    identity = _identity(strategy.stickiness, context)
    if identity is None or strategy.percentage == 0:
        return None
    bucket = normalized_hash(_group(flag_name, strategy), identity)
    if bucket > strategy.percentage:
        return None
    return Reason.SPLIT, f"rollout {strategy.percentage}%: bucket {bucket}"


def _group(flag_name: str, strategy: Strategy) -> str:
    if isinstance(strategy, RolloutStrategy) and strategy.group_id:
        return strategy.group_id
    return flag_name


def _identity(stickiness: str, context: Context) -> str | None:
    """The context's value to hash; None when a named stickiness field is missing."""
    if stickiness == RANDOM_STICKINESS:
        return _random_identity()
    if stickiness == DEFAULT_STICKINESS:
        for field in _DEFAULT_IDENTITIES:
            if context.get(field) not in (None, ""):
                return _text(context[field])
        return _random_identity()
    value = context.get(stickiness)
    return None if value in (None, "") else _text(value)


def _random_identity() -> str:
    # Not a security need, but `secrets` is as cheap here and no scanner has to be told so.
    return str(secrets.randbelow(1_000_000) + 1)


# --- constraints ------------------------------------------------------------------------

_NUMBER_TESTS: dict[Operator, Callable[[float, float], bool]] = {
    Operator.NUM_EQ: operator.eq,
    Operator.NUM_GT: operator.gt,
    Operator.NUM_GTE: operator.ge,
    Operator.NUM_LT: operator.lt,
    Operator.NUM_LTE: operator.le,
}
_SEMVER_TESTS: dict[Operator, Callable[[semver.Version, semver.Version], bool]] = {
    Operator.SEMVER_EQ: operator.eq,
    Operator.SEMVER_GT: operator.gt,
    Operator.SEMVER_LT: operator.lt,
}
_DATE_TESTS: dict[Operator, Callable[[datetime, datetime], bool]] = {
    Operator.DATE_AFTER: operator.gt,
    Operator.DATE_BEFORE: operator.lt,
}
_STRING_TESTS: dict[Operator, Callable[[str, str], bool]] = {
    Operator.STR_CONTAINS: operator.contains,
    Operator.STR_STARTS_WITH: str.startswith,
    Operator.STR_ENDS_WITH: str.endswith,
}


def _compare(constraint: Constraint, value: object) -> bool:
    """The operator's answer before `inverted`; a missing or unreadable value fails it
    (so NOT_IN holds for a context that lacks the field)."""
    op = constraint.operator
    if value is None:
        return op is Operator.NOT_IN
    text = _text(value)
    if op is Operator.IN:
        return text in constraint.values
    if op is Operator.NOT_IN:
        return text not in constraint.values
    if op in _STRING_TESTS:
        return _string_test(constraint, text)
    try:
        return _ordered_test(constraint, value, text)
    except (ValueError, TypeError):
        return False


def _ordered_test(constraint: Constraint, value: object, text: str) -> bool:
    """Number, semver and date comparisons with the constraint's one `value`."""
    op, operand = constraint.operator, constraint.value
    if operand is None:  # the model requires `value` for these operators
        raise ValueError(f"{op} needs a value")
    if op in _NUMBER_TESTS:
        return _NUMBER_TESTS[op](float(text), float(operand))
    if op in _SEMVER_TESTS:
        return _SEMVER_TESTS[op](semver.Version.parse(text), semver.Version.parse(operand))
    instant = value if isinstance(value, datetime) else parse_date(text)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return _DATE_TESTS[op](instant, parse_date(operand))


def _string_test(constraint: Constraint, text: str) -> bool:
    test = _STRING_TESTS[constraint.operator]
    if constraint.case_insensitive:
        return any(test(text.casefold(), wanted.casefold()) for wanted in constraint.values)
    return any(test(text, wanted) for wanted in constraint.values)


def _text(value: object) -> str:
    """Context values compare as text; booleans as JSON spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
