"""Pure evaluation: every operator, strategies, segments, sticky rollouts and variants."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from conveyor.flags.evaluate import Reason, evaluate, normalized_hash
from conveyor.flags.model import (
    Constraint,
    DefaultStrategy,
    Flag,
    Operator,
    Payload,
    PayloadType,
    RolloutStrategy,
    Segment,
    UsersStrategy,
    Variant,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
USERS = [f"user-{n}" for n in range(10_000)]
TOLERANCE = 0.02  # about 4.5 standard deviations of a share measured on 10,000 users


def gated_by(**constraint: Any) -> Flag:
    """An enabled flag whose one strategy is on for contexts meeting `constraint`."""
    strategy = DefaultStrategy(constraints=(Constraint.model_validate(constraint),))
    return Flag(name="gated", enabled=True, strategies=(strategy,))


def rollout(name: str, percentage: int, **fields: Any) -> Flag:
    strategy = RolloutStrategy(percentage=percentage, **fields)
    return Flag(name=name, enabled=True, strategies=(strategy,))


def share(flag: Flag, users: list[str]) -> float:
    return sum(evaluate(flag, {"userId": user}).enabled for user in users) / len(users)


# (constraint, context, expected): at least one true and one false case per operator.
OPERATOR_CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    ({"operator": "IN", "values": ["fr", "de"]}, {"f": "de"}, True),
    ({"operator": "IN", "values": ["fr", "de"]}, {"f": "es"}, False),
    ({"operator": "IN", "values": ["fr"]}, {}, False),
    ({"operator": "IN", "values": [7]}, {"f": 7}, True),
    ({"operator": "IN", "values": ["true"]}, {"f": True}, True),
    ({"operator": "NOT_IN", "values": ["fr"]}, {"f": "es"}, True),
    ({"operator": "NOT_IN", "values": ["fr"]}, {"f": "fr"}, False),
    ({"operator": "NOT_IN", "values": ["fr"]}, {}, True),
    ({"operator": "STR_CONTAINS", "values": ["acme"]}, {"f": "ada@acme.org"}, True),
    ({"operator": "STR_CONTAINS", "values": ["ACME"]}, {"f": "ada@acme.org"}, False),
    (
        {"operator": "STR_CONTAINS", "values": ["ACME"], "case_insensitive": True},
        {"f": "ada@acme.org"},
        True,
    ),
    ({"operator": "STR_STARTS_WITH", "values": ["x", "ada"]}, {"f": "ada@acme.org"}, True),
    ({"operator": "STR_STARTS_WITH", "values": ["acme"]}, {"f": "ada@acme.org"}, False),
    ({"operator": "STR_ENDS_WITH", "values": [".org"]}, {"f": "ada@acme.org"}, True),
    ({"operator": "STR_ENDS_WITH", "values": [".ORG"]}, {"f": "ada@acme.org"}, False),
    (
        {"operator": "STR_ENDS_WITH", "values": [".ORG"], "case_insensitive": True},
        {"f": "ada@acme.org"},
        True,
    ),
    ({"operator": "STR_CONTAINS", "values": ["a"]}, {}, False),
    ({"operator": "NUM_EQ", "value": 3}, {"f": "3.0"}, True),
    ({"operator": "NUM_EQ", "value": "3"}, {"f": 4}, False),
    ({"operator": "NUM_EQ", "value": "3"}, {"f": "three"}, False),
    ({"operator": "NUM_GT", "value": "10"}, {"f": 10.5}, True),
    ({"operator": "NUM_GT", "value": "10"}, {"f": 10}, False),
    ({"operator": "NUM_GTE", "value": "10"}, {"f": 10}, True),
    ({"operator": "NUM_GTE", "value": "10"}, {"f": 9.99}, False),
    ({"operator": "NUM_LT", "value": "10"}, {"f": -1}, True),
    ({"operator": "NUM_LT", "value": "10"}, {"f": 10}, False),
    ({"operator": "NUM_LTE", "value": "10"}, {"f": "10"}, True),
    ({"operator": "NUM_LTE", "value": "10"}, {"f": "11"}, False),
    ({"operator": "SEMVER_EQ", "value": "2.1.0"}, {"f": "2.1.0"}, True),
    ({"operator": "SEMVER_EQ", "value": "2.1.0"}, {"f": "2.1.0-rc.1"}, False),
    ({"operator": "SEMVER_GT", "value": "2.0.0-beta.2"}, {"f": "2.0.0-beta.11"}, True),
    ({"operator": "SEMVER_GT", "value": "2.0.0"}, {"f": "2.0.0-rc.1"}, False),
    ({"operator": "SEMVER_GT", "value": "2.0.0"}, {"f": "2.1"}, False),  # not semver
    ({"operator": "SEMVER_LT", "value": "2.0.0"}, {"f": "1.99.0"}, True),
    ({"operator": "SEMVER_LT", "value": "2.0.0"}, {"f": "10.0.0"}, False),
    ({"operator": "DATE_AFTER", "value": "2026-01-01T00:00:00Z"}, {"f": "2026-03-01"}, True),
    ({"operator": "DATE_AFTER", "value": "2026-01-01T00:00:00Z"}, {"f": "2025-12-31"}, False),
    ({"operator": "DATE_AFTER", "value": "2026-01-01T00:00:00Z"}, {"f": "soon"}, False),
    ({"operator": "DATE_BEFORE", "value": "2026-01-01T00:00:00+01:00"}, {"f": NOW}, False),
    (
        {"operator": "DATE_BEFORE", "value": "2026-01-01T01:00:00+01:00"},
        {"f": "2025-12-31T23:59:59Z"},
        True,
    ),
    ({"operator": "IN", "values": ["fr"], "inverted": True}, {"f": "fr"}, False),
    ({"operator": "NUM_GT", "value": "1", "inverted": True}, {"f": 0}, True),
    ({"operator": "SEMVER_LT", "value": "1.0.0", "inverted": True}, {}, True),
]


@pytest.mark.parametrize(("constraint", "context", "expected"), OPERATOR_CASES)
def test_every_operator(
    constraint: dict[str, Any], context: dict[str, Any], expected: bool
) -> None:
    flag = gated_by(context_name="f", **constraint)

    result = evaluate(flag, context, now=NOW)

    assert result.enabled is expected
    assert result.reason is (Reason.TARGETING_MATCH if expected else Reason.DEFAULT)


def test_every_operator_has_a_case() -> None:
    covered = {Operator(case[0]["operator"]) for case in OPERATOR_CASES}
    assert covered == set(Operator)


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [("DATE_AFTER", "2026-05-31T00:00:00Z", True), ("DATE_BEFORE", "2026-05-31T00:00:00Z", False)],
)
def test_current_time_defaults_to_the_evaluation_time(
    operator: str, value: str, expected: bool
) -> None:
    flag = gated_by(context_name="currentTime", operator=operator, value=value)

    assert evaluate(flag, {}, now=NOW).enabled is expected
    # A context that says when it is wins over the clock.
    assert evaluate(flag, {"currentTime": "2026-01-01T00:00:00Z"}, now=NOW).enabled is not expected


@pytest.mark.parametrize(
    "constraint",
    [
        {"operator": "IN", "value": "fr"},  # a list operator with one value
        {"operator": "IN", "values": []},
        {"operator": "NUM_GT", "values": ["1"]},  # a single-value operator with a list
        {"operator": "NUM_GT", "value": "ten"},
        {"operator": "SEMVER_EQ", "value": "1.2"},
        {"operator": "DATE_AFTER", "value": "next tuesday"},
        {"operator": "REGEX", "value": "."},
    ],
)
def test_a_bad_constraint_is_refused_when_loaded(constraint: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Constraint.model_validate({"context_name": "f", **constraint})


def test_an_off_flag_is_off_whatever_its_strategies() -> None:
    flag = Flag(name="off", enabled=False, strategies=(DefaultStrategy(),))

    result = evaluate(flag, {"userId": "ada"})

    assert (result.enabled, result.reason, result.variant) == (False, Reason.DISABLED, None)


def test_on_with_no_strategies_or_a_plain_default_is_on_for_everyone() -> None:
    bare = Flag(name="bare", enabled=True)
    default = Flag(name="default", enabled=True, strategies=(DefaultStrategy(),))

    for flag in (bare, default):
        result = evaluate(flag, {})
        assert (result.enabled, result.reason) == (True, Reason.STATIC)


def test_users_strategy_lists_ids_of_any_context_field() -> None:
    by_user = UsersStrategy(users=("ada", "grace"))
    by_tenant = UsersStrategy(users=("acme",), field="tenant")
    flag = Flag(name="listed", enabled=True, strategies=(by_user, by_tenant))

    assert evaluate(flag, {"userId": "grace"}).strategy == 0
    assert evaluate(flag, {"userId": "alan", "tenant": "acme"}).strategy == 1
    assert evaluate(flag, {"userId": "alan"}).reason is Reason.DEFAULT


def test_segments_add_their_constraints_and_a_missing_segment_enables_no_one() -> None:
    beta = Segment(
        name="beta",
        constraints=(Constraint(context_name="plan", operator=Operator.IN, values=("beta",)),),
    )
    flag = Flag(name="seg", enabled=True, strategies=(DefaultStrategy(segments=("beta",)),))

    assert evaluate(flag, {"plan": "beta"}, {"beta": beta}).reason is Reason.TARGETING_MATCH
    assert evaluate(flag, {"plan": "free"}, {"beta": beta}).enabled is False
    assert evaluate(flag, {"plan": "beta"}, {}).enabled is False


def test_the_bucket_is_unleash_compatible() -> None:
    # The values Unleash's clients (node, java, go) agree on for normalizedValue.
    assert normalized_hash("gr1", "123") == 73
    assert normalized_hash("groupX", "999") == 25


@pytest.mark.parametrize("percentage", [0, 10, 25, 50, 100])
def test_a_rollout_reaches_its_percentage(percentage: int) -> None:
    flag = rollout("checkout-v2", percentage)

    assert share(flag, USERS) == pytest.approx(percentage / 100, abs=TOLERANCE)


def test_a_rollout_is_sticky_and_only_grows() -> None:
    at_10, at_50 = rollout("checkout-v2", 10), rollout("checkout-v2", 50)
    first = [evaluate(at_10, {"userId": user}).enabled for user in USERS]

    assert first == [evaluate(at_10, {"userId": user}).enabled for user in USERS]
    # Raising the percentage keeps everyone who had the flag: a progressive rollout.
    assert all(
        evaluate(at_50, {"userId": user}).enabled
        for user, had in zip(USERS, first, strict=True)
        if had
    )


def test_rollouts_of_different_flags_are_independent() -> None:
    first, second = rollout("search-v2", 50), rollout("checkout-v2", 50)
    both = sum(
        evaluate(first, {"userId": u}).enabled and evaluate(second, {"userId": u}).enabled
        for u in USERS
    )

    assert both / len(USERS) == pytest.approx(0.25, abs=TOLERANCE)


def test_a_shared_group_id_rolls_flags_out_to_the_same_users() -> None:
    first = rollout("search-v2", 30, group_id="launch")
    second = rollout("checkout-v2", 30, group_id="launch")

    for user in USERS[:2000]:
        assert (
            evaluate(first, {"userId": user}).enabled == evaluate(second, {"userId": user}).enabled
        )


def test_stickiness_fields() -> None:
    by_tenant = rollout("tenanted", 100, stickiness="tenant")
    by_default = rollout("defaulted", 50)

    assert evaluate(by_tenant, {"tenant": "acme"}).reason is Reason.SPLIT
    assert evaluate(by_tenant, {"userId": "ada"}).enabled is False  # no tenant: not in
    session = [evaluate(by_default, {"sessionId": s}).enabled for s in USERS[:500]]
    assert session == [evaluate(by_default, {"userId": s}).enabled for s in USERS[:500]]


def test_without_an_identity_default_stickiness_draws_at_random() -> None:
    flag = rollout("anonymous", 50)

    outcomes = Counter(evaluate(flag, {}).enabled for _ in range(400))

    assert outcomes[True] > 100 and outcomes[False] > 100


def weighted(weights: dict[str, int], stickiness: str = "default") -> tuple[Variant, ...]:
    return tuple(
        Variant(name=name, weight=weight, stickiness=stickiness) for name, weight in weights.items()
    )


def test_variants_split_by_weight_and_stick() -> None:
    flag = Flag(name="colour", enabled=True, variants=weighted({"blue": 250, "green": 750}))

    chosen = {user: evaluate(flag, {"userId": user}).variant for user in USERS}
    counts = Counter(variant.name for variant in chosen.values() if variant)

    assert counts["blue"] / len(USERS) == pytest.approx(0.25, abs=TOLERANCE)
    assert counts["green"] / len(USERS) == pytest.approx(0.75, abs=TOLERANCE)
    assert all(evaluate(flag, {"userId": u}).variant == chosen[u] for u in USERS[:500])


def test_variants_are_independent_of_the_rollout_bucket() -> None:
    # Without a seed of their own, the 20% let in would all land in the first variant.
    strategy = RolloutStrategy(percentage=20)
    flag = Flag(
        name="colour",
        enabled=True,
        strategies=(strategy,),
        variants=weighted({"blue": 500, "green": 500}),
    )

    results = [evaluate(flag, {"userId": user}) for user in USERS]
    counts = Counter(r.variant.name for r in results if r.enabled and r.variant)

    assert counts["blue"] / (counts["blue"] + counts["green"]) == pytest.approx(0.5, abs=0.04)


def test_strategy_variants_replace_the_flags_and_carry_payloads() -> None:
    payload = Payload(type=PayloadType.JSON, value='{"limit": 5}')
    beta = DefaultStrategy(
        constraints=(Constraint(context_name="plan", operator=Operator.IN, values=("beta",)),),
        variants=(Variant(name="beta", weight=1, payload=payload),),
    )
    flag = Flag(
        name="limits",
        enabled=True,
        strategies=(beta, DefaultStrategy()),
        variants=weighted({"standard": 1}),
    )

    beta_variant = evaluate(flag, {"plan": "beta"}).variant
    assert beta_variant is not None and beta_variant.payload is not None
    assert beta_variant.payload.decoded() == {"limit": 5}
    other = evaluate(flag, {"plan": "free"}).variant
    assert other is not None and other.name == "standard"


def test_variants_stick_on_their_own_field() -> None:
    flag = Flag(
        name="by-tenant", enabled=True, variants=weighted({"a": 1, "b": 1}, stickiness="tenant")
    )
    # Naming the stickiness on one variant is enough.
    named_once = Flag.model_validate(
        {
            "name": "by-tenant",
            "enabled": True,
            "variants": [
                {"name": "a", "weight": 1, "stickiness": "tenant"},
                {"name": "b", "weight": 1},
            ],
        }
    )

    for candidate in (flag, named_once):
        names = {evaluate(candidate, {"tenant": "acme", "userId": u}).variant for u in USERS[:200]}
        assert len(names) == 1
    by_tenant = Counter(evaluate(named_once, {"tenant": f"t{n}"}).variant for n in range(2000))
    assert by_tenant[named_once.variants[0]] / 2000 == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    "variants",
    [
        [
            {"name": "a", "weight": 1, "stickiness": "userId"},
            {"name": "b", "weight": 1, "stickiness": "tenant"},
        ],
        [{"name": "a", "weight": 1}, {"name": "a", "weight": 2}],
        [{"name": "a", "weight": 0}],
        [{"name": "a", "weight": 1, "payload": {"type": "number", "value": "many"}}],
        [{"name": "a", "weight": 1, "payload": {"type": "json", "value": "{"}}],
    ],
    ids=["mixed-stickiness", "duplicate-names", "no-weight", "bad-number", "bad-json"],
)
def test_bad_variants_are_refused(variants: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        Flag.model_validate({"name": "v", "variants": variants})
