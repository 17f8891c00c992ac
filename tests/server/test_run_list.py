"""The run list's keyset pages over many runs: consecutive, no gaps, no repeats, filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import ConveyorError
from conveyor.service.run_list import RunFilters, run_page
from conveyor.states import RunState
from conveyor.store.store import Store
from server.bulk_runs import BRANCHES, fill


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    opened = Store(Path(tmp_path_factory.mktemp("state")))
    fill(opened, 1000, jobs_per_run=2)
    return opened


def test_paging_older_then_newer_visits_every_run_once(store: Store) -> None:
    seen: list[int] = []
    page = run_page(store, limit=37)
    assert page.newer is None
    while True:
        seen.extend(run.id for run in page.runs)
        if page.older is None:
            break
        page = run_page(store, before=page.older, limit=37)
    assert seen == list(range(1000, 0, -1))
    last = [run.id for run in page.runs]
    back: list[int] = []
    while page.newer is not None:
        page = run_page(store, after=page.newer, limit=37)
        back = [run.id for run in page.runs] + back
    assert back == list(range(1000, 1000 - len(back), -1))
    assert back + last == seen  # newer from the oldest page: back to the newest, all of them


def test_a_filtered_page_holds_only_matching_runs_in_order(store: Store) -> None:
    filters = RunFilters.parse(branch=BRANCHES[1], status="failed")
    ids: list[int] = []
    page = run_page(store, filters, limit=10)
    while True:
        assert all(r.branch == BRANCHES[1] and r.state is RunState.FAILED for r in page.runs)
        ids.extend(r.id for r in page.runs)
        if page.older is None:
            break
        page = run_page(store, filters, before=page.older, limit=10)
    expected = [n + 1 for n in range(999, -1, -1) if n % 4 == 1 and n % 5 == 3]
    assert ids == expected


def test_a_commit_prefix_matches_and_like_wildcards_do_not(store: Store) -> None:
    page = run_page(store, RunFilters.parse(commit="0000000a"))
    assert [r.id for r in page.runs] == [11]
    assert run_page(store, RunFilters.parse(commit="%")).runs == []


def test_an_unknown_status_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConveyorError, match="no run status"):
        RunFilters.parse(status="green")
