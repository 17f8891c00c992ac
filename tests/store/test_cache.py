from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.store import CacheEntry, EventKind, Store


@pytest.fixture
def store(tmp_path: Path, store_url: str | None) -> Iterator[Store]:
    with Store(tmp_path, store_url) as opened:
        yield opened


def _entry(key: str, *, job_id: str = "build", created_at: float, **components: str) -> CacheEntry:
    return CacheEntry(
        key=key,
        pipeline="ci",
        job_id=job_id,
        run_id=1,
        outputs_manifest="sha256:" + "b" * 64,
        components=components,
        created_at=created_at,
    )


def test_put_then_get_returns_the_entry(store: Store) -> None:
    entry = _entry("k1", created_at=100.0, command="make", inputs="sha256:" + "c" * 64)

    store.cache_put(entry)

    assert store.cache_get("k1") == entry
    assert store.cache_get("k2") is None
    put_events = [e for e in store.events() if e.kind == EventKind.CACHE_PUT]
    assert [(e.job_id, e.data["key"]) for e in put_events] == [("build", "k1")]


def test_put_replaces_an_existing_key(store: Store) -> None:
    store.cache_put(_entry("k1", created_at=100.0, command="make"))
    newer = _entry("k1", created_at=200.0, command="make all")

    store.cache_put(newer)

    assert store.cache_get("k1") == newer


def test_latest_is_the_newest_entry_of_that_job(store: Store) -> None:
    store.cache_put(_entry("old", created_at=100.0))
    store.cache_put(_entry("new", created_at=300.0))
    store.cache_put(_entry("middle", created_at=200.0))
    store.cache_put(_entry("other-job", job_id="test", created_at=400.0))

    latest = store.cache_latest("ci", "build")

    assert latest is not None
    assert latest.key == "new"
    assert store.cache_latest("ci", "deploy") is None
    assert store.cache_latest("nightly", "build") is None
