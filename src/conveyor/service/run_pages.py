"""The runs list, a page at a time with filters: for the API and the web UI (and any
CLI that pages). Newest first, by id; the cursor is the last id shown."""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.errors import ConveyorError
from conveyor.service.pages import Page, clamp_limit, decode_cursor, page_of
from conveyor.states import RunState
from conveyor.store.records import RunRecord
from conveyor.store.store import Store

HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class RunFilter:
    branch: str | None = None
    state: RunState | None = None
    commit: str | None = None  # a sha's first characters
    pipeline: str | None = None


def run_state(text: str | None) -> RunState | None:
    if not text:
        return None
    try:
        return RunState(text)
    except ValueError:
        known = ", ".join(state.value for state in RunState)
        raise ConveyorError(f"no run status {text!r}", hint=f"one of: {known}") from None


def commit_prefix(text: str | None) -> str | None:
    if not text:
        return None
    prefix = text.lower()
    if not set(prefix) <= HEX:
        raise ConveyorError(f"{text!r} is not a commit sha", hint="hex digits, e.g. 3f2a9c1")
    return prefix


def runs_page(
    store: Store, where: RunFilter, limit: int | None = None, cursor: str | None = None
) -> Page[RunRecord]:
    size = clamp_limit(limit)
    found = store.list_runs(
        size + 1,
        pipeline=where.pipeline,
        branch=where.branch,
        state=where.state,
        before_id=decode_cursor(cursor),
        commit_prefix=where.commit,
    )
    return page_of(found, size, lambda run: run.id)
