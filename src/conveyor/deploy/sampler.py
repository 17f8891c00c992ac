"""Sampling the golden signals of an environment into the store, and reading them back.

A sample is the router's cumulative counters per release plus the saturation of the
release's replicas; rates come from two samples (`signals.window_rates`). The judge of
progressive delivery reads these series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from conveyor.deploy.model import ReleaseSignals, Saturation, SignalSample
from conveyor.deploy.routers.base import Router
from conveyor.deploy.runtimes.base import Runtime
from conveyor.errors import ConveyorError
from conveyor.store.ledger import DeployLedger, SampleRow

SampleSink = Callable[[list[SignalSample]], None]
LogErrorsOf = Callable[[str], int]  # release id -> its error-level log lines so far


@dataclass(frozen=True)
class DataPlane:
    """An environment's router and runtime, as the `router` metrics provider reads them
    (the `target` of its `ProviderSite`)."""

    router: Router
    runtime: Runtime
    on_sample: SampleSink | None = None  # receives each sample taken, to be stored


def take_sample(
    environment: str,
    router: Router,
    runtime: Runtime,
    ledger: DeployLedger,
    log_errors_of: LogErrorsOf | None = None,
) -> list[SignalSample]:
    """One sample of every release the router knows, recorded in the store; with
    `log_errors_of` (a `log_errors.ErrorCounter`, kept between samples), its log errors."""
    samples = plane_samples(environment, router, runtime, log_errors_of=log_errors_of)
    ledger.samples.add([to_row(sample) for sample in samples])
    return samples


def plane_samples(
    environment: str,
    router: Router,
    runtime: Runtime,
    running: set[str] | None = None,
    now: float | None = None,
    *,
    log_errors_of: LogErrorsOf | None = None,
) -> list[SignalSample]:
    """One sample of every release the router knows, not recorded (the continuous watch
    records several environments' at once). `running`: the runtime's releases, if known;
    `now`: the samples' time (default: the clock's); `log_errors_of`: as `take_sample`."""
    running = set(runtime.releases()) if running is None else running

    def saturation_of(release_id: str) -> Saturation | None:
        return saturation_or_none(runtime, release_id) if release_id in running else None

    return read_samples(environment, router, saturation_of, now=now, log_errors_of=log_errors_of)


def read_samples(
    environment: str,
    router: Router,
    saturation_of: Callable[[str], Saturation | None],
    releases: Sequence[str] | None = None,
    *,
    now: float | None = None,
    log_errors_of: LogErrorsOf | None = None,
) -> list[SignalSample]:
    """One sample per release (default: every release the router routes or counts): its
    cumulative counters (zeros if the router has none yet), weight and saturation; and
    with `log_errors_of`, the release's cumulative count of error-level log lines."""
    ts = time.time() if now is None else now
    weights = {backend.release_id: backend.weight for backend in router.routes().backends}
    signals = {signal.release_id: signal for signal in router.signals()}
    names = sorted(set(weights) | set(signals)) if releases is None else list(releases)
    return [
        SignalSample(
            environment,
            release_id,
            ts,
            _with_log_errors(
                signals.get(release_id) or ReleaseSignals(release_id, 0, 0, 0, 0), log_errors_of
            ),
            saturation_of(release_id),
            weights.get(release_id, 0),
        )
        for release_id in names
    ]


def _with_log_errors(signals: ReleaseSignals, log_errors_of: LogErrorsOf | None) -> ReleaseSignals:
    if log_errors_of is None:
        return signals
    return replace(signals, log_errors=log_errors_of(signals.release_id))


def stored_samples(
    ledger: DeployLedger, environment: str, release_id: str | None = None, since: float = 0.0
) -> list[SignalSample]:
    return [from_row(row) for row in ledger.samples.of(environment, release_id, since)]


def to_row(sample: SignalSample) -> SampleRow:
    signals = asdict(sample.signals)
    # JSON keys are strings: the bucket bounds travel as their repr ("inf" included).
    signals["latency_buckets"] = {repr(k): v for k, v in sample.signals.latency_buckets.items()}
    return SampleRow(
        environment=sample.environment,
        release_id=sample.release_id,
        ts=sample.ts,
        weight=sample.weight,
        signals=signals,
        saturation=asdict(sample.saturation) if sample.saturation else None,
    )


def from_row(row: SampleRow) -> SignalSample:
    raw: dict[str, Any] = dict(row.signals)
    buckets: Mapping[str, int] = raw.pop("latency_buckets", {}) or {}
    signals = ReleaseSignals(
        **raw, latency_buckets={float(bound): int(count) for bound, count in buckets.items()}
    )
    saturation = Saturation(**row.saturation) if row.saturation else None
    return SignalSample(row.environment, row.release_id, row.ts, signals, saturation, row.weight)


def saturation_or_none(runtime: Runtime, release_id: str) -> Saturation | None:
    try:
        return runtime.saturation(release_id)
    except (ConveyorError, OSError):  # the release stopped between the two reads
        return None
