"""An environment's `business:` section: counters the service exposes, their ratios, and
the guardrails a release or a flag rollout must keep (docs/monitoring.md).

environments:
  production:
    business:
      metrics_path: /metrics          # where each replica exposes Prometheus text
      metrics:
        orders: {counter: shop_orders_total}
        checkouts: {counter: shop_checkouts_started_total}
      ratios:
        conversion: {numerator: orders, denominator: checkouts}
      guardrails:
        - {ratio: conversion, max_drop: 5%}   # relative to the baseline (or control)
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

_NAME = r"^[a-z][a-z0-9_]{0,39}$"
# Prometheus metric names; `_total` may be given or not (the parser strips it).
_COUNTER = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusinessMetric(_Strict):
    counter: str = Field(description="A Prometheus counter the service exposes.")

    @field_validator("counter")
    @classmethod
    def _counter_name(cls, value: str) -> str:
        if not _COUNTER.match(value):
            raise ValueError(f"{value!r} is not a Prometheus metric name")
        return value

    @property
    def family(self) -> str:
        """The name prometheus_client's parser gives the counter's family."""
        return self.counter.removesuffix("_total")


class BusinessRatio(_Strict):
    numerator: str = Field(description="A metric of `metrics:` (e.g. orders).")
    denominator: str = Field(description="A metric of `metrics:` (e.g. checkouts).")


def _fraction(value: Any) -> Any:
    """`5%`, `5 %` or 0.05."""
    if isinstance(value, str):
        match = _PERCENT.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a percentage such as 5%")
        return float(match.group(1)) / 100.0
    return value


class BusinessGuardrail(_Strict):
    """The ratio must not drop by more than `max_drop` (relative) against the reference:
    a canary's baseline (or the stable release), a flag's users without it."""

    ratio: str = Field(description="A ratio of `ratios:`.")
    max_drop: float = Field(gt=0, lt=1, description="Largest tolerated relative drop: 5%.")
    min_count: int = Field(
        default=20,
        ge=1,
        description="Denominator events each side needs before the guardrail may pass.",
    )
    level: float = Field(
        default=0.05, gt=0, lt=0.5, description="Chance of a false rollback, at most."
    )

    @field_validator("max_drop", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return _fraction(value)


class Business(_Strict):
    metrics_path: str = Field(
        default="/metrics", pattern=r"^/", description="Each replica's Prometheus text."
    )
    metrics: dict[str, BusinessMetric] = Field(default_factory=dict, description="Name -> counter.")
    ratios: dict[str, BusinessRatio] = Field(
        default_factory=dict, description="Name -> numerator and denominator metrics."
    )
    guardrails: list[BusinessGuardrail] = Field(default_factory=list)
    flag_label: str = Field(
        default="flag", pattern=_LABEL, description="The label naming the flag."
    )
    variant_label: str = Field(
        default="variant", pattern=_LABEL, description="The label naming its variant."
    )
    control_variant: str = Field(
        default="off", description="The variant the others are compared with."
    )

    @field_validator("metrics")
    @classmethod
    def _metric_names(cls, value: dict[str, BusinessMetric]) -> dict[str, BusinessMetric]:
        for name in value:
            if not re.match(_NAME, name):
                raise ValueError(f"metric name {name!r}: use lowercase letters, digits and _")
        return value

    @field_validator("ratios")
    @classmethod
    def _known_metrics(
        cls, value: dict[str, BusinessRatio], info: ValidationInfo
    ) -> dict[str, BusinessRatio]:
        metrics = info.data.get("metrics") or {}
        for name, ratio in value.items():
            if not re.match(_NAME, name):
                raise ValueError(f"ratio name {name!r}: use lowercase letters, digits and _")
            for role in ("numerator", "denominator"):
                metric = getattr(ratio, role)
                if metric not in metrics:
                    raise ValueError(
                        f"ratio {name!r}: {role} {metric!r} is not a metric "
                        f"(metrics: {', '.join(metrics) or 'none'})"
                    )
            if ratio.numerator == ratio.denominator:
                raise ValueError(f"ratio {name!r}: numerator and denominator are the same")
        return value

    @field_validator("guardrails")
    @classmethod
    def _known_ratios(
        cls, value: list[BusinessGuardrail], info: ValidationInfo
    ) -> list[BusinessGuardrail]:
        ratios = info.data.get("ratios") or {}
        for rail in value:
            if rail.ratio not in ratios:
                raise ValueError(
                    f"guardrail: {rail.ratio!r} is not a ratio "
                    f"(ratios: {', '.join(ratios) or 'none'})"
                )
        return value
