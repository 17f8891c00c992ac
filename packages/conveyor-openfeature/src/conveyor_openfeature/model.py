"""A feature flag's definition: strategies, constraints, segments and variants.

The shape follows Unleash's (strategies with constraints and segments, weighted variants
with stickiness) in conveyor.yml's snake_case:

    name: new-catalogue-banner
    enabled: true
    strategies:
      - type: users
        users: [alice]
      - type: rollout
        percentage: 25
        stickiness: userId
        constraints:
          - {context_name: country, operator: IN, values: [fr, de]}
    variants:
      - {name: blue, weight: 50, payload: {type: string, value: "#00f"}}
      - {name: green, weight: 50}

Every value a constraint compares with is parsed when the definition is loaded, so a
typo fails `conveyor flags set`, never an evaluation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import semver
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
DEFAULT_STICKINESS = "default"  # userId, then sessionId, then random
RANDOM_STICKINESS = "random"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Operator(StrEnum):
    IN = "IN"
    NOT_IN = "NOT_IN"
    STR_CONTAINS = "STR_CONTAINS"
    STR_STARTS_WITH = "STR_STARTS_WITH"
    STR_ENDS_WITH = "STR_ENDS_WITH"
    NUM_EQ = "NUM_EQ"
    NUM_GT = "NUM_GT"
    NUM_GTE = "NUM_GTE"
    NUM_LT = "NUM_LT"
    NUM_LTE = "NUM_LTE"
    SEMVER_EQ = "SEMVER_EQ"
    SEMVER_GT = "SEMVER_GT"
    SEMVER_LT = "SEMVER_LT"
    DATE_AFTER = "DATE_AFTER"
    DATE_BEFORE = "DATE_BEFORE"

    @property
    def takes_list(self) -> bool:
        """List operators compare with `values`; the others with one `value`."""
        return self in _LIST_OPERATORS


_LIST_OPERATORS = frozenset(
    {
        Operator.IN,
        Operator.NOT_IN,
        Operator.STR_CONTAINS,
        Operator.STR_STARTS_WITH,
        Operator.STR_ENDS_WITH,
    }
)


def parse_date(text: str) -> datetime:
    """An ISO 8601 instant; one without an offset is taken as UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Constraint(_Strict):
    """One test on a context field; all of a strategy's constraints must hold."""

    context_name: str = Field(min_length=1, description="The context field, e.g. userId.")
    operator: Operator
    values: tuple[str, ...] = Field(default=(), description="For IN, NOT_IN and STR_*.")
    value: str | None = Field(default=None, description="For NUM_*, SEMVER_* and DATE_*.")
    case_insensitive: bool = Field(default=False, description="For STR_* operators.")
    inverted: bool = Field(default=False, description="Negates the result.")

    @field_validator("values", mode="before")
    @classmethod
    def _stringify_values(cls, raw: object) -> object:
        # YAML reads `values: [1, 2]` as numbers; context values are compared as text.
        return [str(item) for item in raw] if isinstance(raw, list | tuple) else raw

    @field_validator("value", mode="before")
    @classmethod
    def _stringify_value(cls, raw: object) -> object:
        return str(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else raw

    @model_validator(mode="after")
    def _check_operands(self) -> Constraint:
        if self.operator.takes_list:
            if not self.values or self.value is not None:
                raise ValueError(f"{self.operator} compares with `values` (a list), not `value`")
            return self
        if self.value is None or self.values:
            raise ValueError(f"{self.operator} compares with one `value`, not `values`")
        _parse_operand(self.operator, self.value)
        return self


def _parse_operand(operator: Operator, value: str) -> None:
    try:
        if operator.startswith("NUM_"):
            float(value)
        elif operator.startswith("SEMVER_"):
            semver.Version.parse(value)
        else:
            parse_date(value)
    except ValueError as error:
        raise ValueError(f"{operator} cannot use {value!r}: {error}") from None


class Segment(_Strict):
    """A named list of constraints that strategies of any flag can refer to."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    constraints: tuple[Constraint, ...] = ()


class PayloadType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    JSON = "json"


class Payload(_Strict):
    type: PayloadType
    value: str

    @model_validator(mode="after")
    def _check_value(self) -> Payload:
        try:
            if self.type is PayloadType.NUMBER:
                float(self.value)
            elif self.type is PayloadType.JSON:
                json.loads(self.value)
        except ValueError as error:
            raise ValueError(f"payload is not {self.type}: {error}") from None
        return self

    def decoded(self) -> object:
        """The value as its type says: text, a number, or parsed JSON."""
        if self.type is PayloadType.NUMBER:
            return float(self.value)
        if self.type is PayloadType.JSON:
            return json.loads(self.value)
        return self.value


class Variant(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    weight: int = Field(ge=0, le=1000, description="Relative to the other variants' weights.")
    stickiness: str = Field(default=DEFAULT_STICKINESS, min_length=1)
    payload: Payload | None = None


def named_stickiness(variants: tuple[Variant, ...]) -> list[str]:
    """The stickiness the variants name, in order, without repeats or `default`."""
    named = [v.stickiness for v in variants if v.stickiness != DEFAULT_STICKINESS]
    return list(dict.fromkeys(named))


def variant_stickiness(variants: tuple[Variant, ...]) -> str:
    """The one stickiness of a set of variants: the one they name, else `default`."""
    return next(iter(named_stickiness(variants)), DEFAULT_STICKINESS)


def check_variants(variants: tuple[Variant, ...]) -> None:
    """Variants share one stickiness (they split one bucket range; naming it on one is
    enough) and need some weight."""
    if not variants:
        return
    if len({variant.name for variant in variants}) != len(variants):
        raise ValueError("variant names must be unique")
    if len(named_stickiness(variants)) > 1:
        raise ValueError("all variants of a flag or strategy must use the same stickiness")
    if sum(variant.weight for variant in variants) == 0:
        raise ValueError("variants need a total weight above 0")


class StrategyType(StrEnum):
    DEFAULT = "default"  # on for everyone the constraints let through
    ROLLOUT = "rollout"  # a sticky percentage
    USERS = "users"  # a list of ids


class _StrategyBase(_Strict):
    constraints: tuple[Constraint, ...] = ()
    segments: tuple[str, ...] = Field(default=(), description="Names of segments; all hold.")
    # Given, they replace the flag's variants for whoever this strategy enables.
    variants: tuple[Variant, ...] = ()

    @model_validator(mode="after")
    def _check_variants(self) -> _StrategyBase:
        check_variants(self.variants)
        return self

    @property
    def targeted(self) -> bool:
        return bool(self.constraints or self.segments)


class DefaultStrategy(_StrategyBase):
    type: Literal[StrategyType.DEFAULT] = StrategyType.DEFAULT


class RolloutStrategy(_StrategyBase):
    type: Literal[StrategyType.ROLLOUT] = StrategyType.ROLLOUT
    percentage: int = Field(ge=0, le=100)
    stickiness: str = Field(default=DEFAULT_STICKINESS, min_length=1)
    group_id: str | None = Field(default=None, description="Hash group; default: the flag.")


class UsersStrategy(_StrategyBase):
    type: Literal[StrategyType.USERS] = StrategyType.USERS
    users: tuple[str, ...] = Field(min_length=1)
    field: str = Field(default="userId", min_length=1, description="The context field.")

    @field_validator("users", mode="before")
    @classmethod
    def _stringify_users(cls, raw: object) -> object:
        return [str(item) for item in raw] if isinstance(raw, list | tuple) else raw


Strategy = Annotated[DefaultStrategy | RolloutStrategy | UsersStrategy, Field(discriminator="type")]


class Flag(_Strict):
    """A flag in one environment. Enabled with no strategies means on for everyone."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    enabled: bool = False
    strategies: tuple[Strategy, ...] = ()
    variants: tuple[Variant, ...] = ()

    @model_validator(mode="after")
    def _check_variants(self) -> Flag:
        check_variants(self.variants)
        return self

    def segment_names(self) -> set[str]:
        return {name for strategy in self.strategies for name in strategy.segments}


class DefinitionsBody(BaseModel):
    """`GET /flags/{environment}`: what the server sends and the provider evaluates."""

    environment: str
    version: int
    flags: list[Flag]
    segments: list[Segment]
