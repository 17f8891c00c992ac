"""Retention of signal samples: every sample while young, then the last one per interval
per release, none past the window; rates between kept samples stay exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor.store import Store
from conveyor.store.ledger import Retention, SampleRow
from conveyor.store.schema import environments

NOW = 1_800_000_000.0  # a multiple of 60
RETENTION = Retention(full=3600.0, every=60, keep=86400.0)


def row(release: str, ts: float, requests: int, environment: str = "production") -> SampleRow:
    return SampleRow(environment, release, ts, 100, {"requests": requests}, {"cpu": requests})


def per_second(release: str, start: float, seconds: int) -> list[SampleRow]:
    """`seconds` samples a second apart, counters growing by one request a second."""
    return [row(release, start + i, int(start - NOW) + i) for i in range(seconds)]


def test_old_samples_keep_the_last_of_each_minute_and_young_ones_stay_whole(
    tmp_path: Path, store_url: str | None
) -> None:
    two_hours_ago = NOW - 2 * 3600
    with Store(tmp_path, store_url) as store:
        samples = store.ledger.samples
        samples.add(per_second("r1", two_hours_ago, 180))  # three old minutes
        samples.add(per_second("r2", two_hours_ago, 120))  # another release, same minutes
        samples.add(per_second("r1", NOW - 600, 90))  # young

        pruned = samples.prune("production", RETENTION, NOW)
        kept_r1 = samples.of("production", "r1")
        kept_r2 = samples.of("production", "r2")

    assert (pruned.downsampled, pruned.dropped) == (180 - 3 + 120 - 2, 0)
    assert [s.ts - two_hours_ago for s in kept_r1[:3]] == [59, 119, 179]  # each minute's last
    assert [s.ts - two_hours_ago for s in kept_r2] == [59, 119]
    assert len(kept_r1) == 3 + 90  # the young ones all kept
    # Cumulative counters: the rate between kept samples is the rate they had.
    first, second = kept_r1[0], kept_r1[1]
    assert (second.signals["requests"] - first.signals["requests"]) / (second.ts - first.ts) == 1
    assert second.saturation == {"cpu": second.signals["requests"]}


def test_samples_past_the_window_are_dropped_and_other_environments_untouched(
    tmp_path: Path, store_url: str | None
) -> None:
    with Store(tmp_path, store_url) as store:
        samples = store.ledger.samples
        samples.add([row("r1", NOW - 2 * 86400, 1), row("r1", NOW - 2 * 86400 + 1, 2)])
        samples.add([row("s1", NOW - 2 * 86400, 1, environment="staging")])

        pruned = samples.prune("production", RETENTION, NOW)

        assert (pruned.downsampled, pruned.dropped) == (0, 2)
        assert samples.of("production") == []
        assert len(samples.of("staging")) == 1


def test_pruning_twice_changes_nothing_more(tmp_path: Path, store_url: str | None) -> None:
    with Store(tmp_path, store_url) as store:
        samples = store.ledger.samples
        samples.add(per_second("r1", NOW - 2 * 3600, 150))
        samples.prune("production", RETENTION, NOW)
        kept = samples.of("production")

        again = samples.prune("production", RETENTION, NOW + 30)  # same minute boundary

        assert (again.downsampled, again.dropped) == (0, 0)
        assert samples.of("production") == kept


def test_adding_samples_prunes_when_a_check_is_due(tmp_path: Path, store_url: str | None) -> None:
    with Store(tmp_path, store_url) as store:
        samples = store.ledger.samples
        samples.retain("production", Retention(full=1.0, every=60, keep=2.0, check_every=3600))
        samples.add([row("r1", 1.0, 1)])  # from 1970: past the window, pruned at once
        samples.add([row("r1", 2.0, 2)])  # the next check is an hour away

        assert [s.ts for s in samples.of("production")] == [2.0]


def test_a_retention_keeping_less_than_full_resolution_is_refused() -> None:
    with pytest.raises(ValueError, match="full <= keep"):
        Retention(full=7200.0, keep=3600.0)


def test_each_prune_reads_on_from_where_the_last_one_stopped(
    tmp_path: Path, store_url: str | None
) -> None:
    with Store(tmp_path, store_url) as store:
        store.ledger.environments.ensure("production", 18080, 18081)
        samples = store.ledger.samples
        samples.add(per_second("r1", NOW - 3600 - 120, 240))  # two old minutes, two young
        first = samples.prune("production", RETENTION, NOW)
        second = samples.prune("production", RETENTION, NOW + 120)  # the young ones aged
        with store.engine.connect() as conn:
            watermark = conn.execute(sa.select(environments.c.samples_pruned_before)).scalar()
        kept = samples.of("production")

    assert (first.downsampled, second.downsampled) == (118, 118)
    assert [s.ts - (NOW - 3600) for s in kept] == [-61, -1, 59, 119]
    assert watermark == NOW + 120 - 3600
