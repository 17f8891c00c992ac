"""Release notes per release: the commits it brings to its environment (since the commit
of the release it replaced there: for production, the previous production release),
grouped by Conventional Commits type (features, fixes, others), breaking changes first,
each with the requirement and defect ids it closes or references.

The same notes are part of the release record (`notes`, service/release_record.py),
read from the same commits; `conveyor release notes ENV [RELEASE]` and
GET /api/v1/environments/{environment}/notes show them alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor.observe.commit_links import notes_markdown
from conveyor.service.project import Project
from conveyor.service.release_record import deploy_change, find_deploy
from conveyor.store.store import Store


@dataclass(frozen=True)
class ReleaseNotes:
    environment: str
    release_id: str
    deploy_id: int
    previous_release: str | None
    since: str | None  # the replaced release's commit; None: its own commit alone
    until: str | None  # the release's commit (None: no run recorded it)
    features: list[dict[str, Any]] = field(default_factory=list)
    fixes: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    breaking: list[dict[str, Any]] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)  # every id the commits link


def release_notes(
    project: Project, store: Store, environment: str, release_id: str | None = None
) -> ReleaseNotes:
    """The notes of `release_id` (its latest deploy), else of the environment's latest
    successful release."""
    deploy = find_deploy(store, environment, release_id)
    change = deploy_change(project, store, deploy)
    previous = deploy.previous_release
    notes: Mapping[str, Any] = change.notes
    return ReleaseNotes(
        environment=environment,
        release_id=deploy.release_id,
        deploy_id=deploy.id,
        previous_release=previous if previous != deploy.release_id else None,
        since=change.since,
        until=change.until,
        features=list(notes["features"]),
        fixes=list(notes["fixes"]),
        others=list(notes["others"]),
        breaking=list(notes["breaking"]),
        linked=list(notes["linked"]),
    )


def to_markdown(notes: ReleaseNotes) -> str:
    since = f" since {notes.previous_release}" if notes.previous_release else ""
    lines = [f"## {notes.release_id} to {notes.environment}{since}"]
    lines += notes_markdown(
        {
            "features": notes.features,
            "fixes": notes.fixes,
            "others": notes.others,
            "breaking": notes.breaking,
            "linked": notes.linked,
        }
    )
    return "\n".join(lines) + "\n"
