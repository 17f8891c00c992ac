"""Settings read once from the environment when the app is created."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    db_path: str = "shop.db"
    version: str = "dev"
    # Fraction (0..1) of /api requests answered 500: a fault to inject for the release demo.
    fault_rate: float = 0.0
    # Added to every /api request, to make a release measurably slower on purpose.
    extra_latency_ms: float = 0.0
    # Conveyor's flag evaluation API; empty: every flag at its default.
    flags_url: str = ""
    # The environment whose flags apply; Conveyor's runtimes set CONVEYOR_ENVIRONMENT.
    environment: str = "local"
    # The payments service the checkout asks to take each order's payment; empty: none.
    payments_url: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ConfigError(f"SHOP_FAULT_RATE must be between 0 and 1, got {self.fault_rate}")
        if self.extra_latency_ms < 0:
            raise ConfigError(
                f"SHOP_EXTRA_LATENCY_MS must not be negative, got {self.extra_latency_ms}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            db_path=env.get("SHOP_DB") or _default_db(env),
            # Conveyor names the release it runs (the digest's short form).
            version=env.get("SHOP_VERSION") or env.get("CONVEYOR_VERSION") or "dev",
            fault_rate=_number(env, "SHOP_FAULT_RATE"),
            extra_latency_ms=_number(env, "SHOP_EXTRA_LATENCY_MS"),
            flags_url=env.get("CONVEYOR_FLAGS_URL", "").strip(),
            environment=env.get("CONVEYOR_ENVIRONMENT") or "local",
            payments_url=env.get("PAYMENTS_URL", "").strip(),
        )


def _default_db(env: Mapping[str, str]) -> str:
    """In the environment's data folder when deployed (the release folder is read-only)."""
    data_dir = env.get("CONVEYOR_DATA_DIR")
    return os.path.join(data_dir, "shop.db") if data_dir else "shop.db"


def _number(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
