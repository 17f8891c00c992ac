"""Requirements out: an actionable insight or a closed incident filed as a requirement,
on the forge (its issues API) or as a Markdown file in the repository; a later commit
that references it links back.

Where it goes: the project's forge when conveyor.yml has a `forge:` section (GitHub,
GitLab, Gitea or Forgejo, with `CONVEYOR_FORGE_TOKEN`), keyed `#N` as the forge numbers
it; otherwise `docs/requirements/REQ-N.md` in the project's folder, keyed `REQ-N`. The
file is written, not committed: `commit_requirement_file` commits that one file when
asked (`conveyor insights file ITEM --commit`), so nobody's staged work is swept in.

Every filed requirement is a row of the `requirements` table; filing the same `source`
again gives back the one already filed. `link_commits` reads the repository's commits
since the oldest open requirement was filed and marks each requirement a commit
references by its key as addressed by that commit.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa

from conveyor.errors import ConveyorError
from conveyor.forge.settings import TOKEN_VARIABLE, ForgeSettings
from conveyor.observe.commit_links import links_between, local_key
from conveyor.service.project import Project
from conveyor.store import schema
from conveyor.store.db import read_transaction, write_transaction
from conveyor.store.store import Store
from conveyor.vcs.git import repo_root, run_git

REQUIREMENTS_DIR = "docs/requirements"  # in the project's folder
MARKDOWN = "markdown"  # `filed_on` of a requirement written as a file
KEY_PREFIX = "REQ-"
MAX_TITLE = 256
MAX_BODY = 60_000  # GitHub takes 65,536 characters; GitLab and Gitea more
MAX_LABELS = 20
CLOCK_SKEW = 300.0  # seconds a commit may claim to predate the requirement it addresses
MAX_SCANNED = 10_000  # commits read per link-back


class RequirementState(StrEnum):
    FILED = "filed"
    ADDRESSED = "addressed"  # a commit references its key


@dataclass(frozen=True)
class FiledRequirement:
    key: str  # the id a commit references: "#123" on a forge, "REQ-7" for a Markdown file
    title: str
    location: str  # the issue's URL, or the Markdown file's path in the repository


@dataclass(frozen=True)
class Requirement:
    """A filed requirement as recorded, and whether a commit addressed it."""

    key: str
    title: str
    source: str
    location: str
    filed_on: str  # the forge's name, or "markdown"
    labels: tuple[str, ...]
    filed_by: str
    filed_at: float
    addressed_by: str | None  # the commit's sha
    addressed_at: float | None
    closed: bool | None  # the commit used a closing keyword (Fixes, Closes, Resolves)

    @property
    def state(self) -> RequirementState:
        return RequirementState.FILED if self.addressed_by is None else RequirementState.ADDRESSED

    def filed(self) -> FiledRequirement:
        return FiledRequirement(self.key, self.title, self.location)


def file_requirement(
    project: Project,
    store: Store,
    *,
    title: str,
    body: str,
    labels: Sequence[str] = (),
    source: str,  # what produced it: "incident:12", "insight:flaky-tests"...
    actor: str,
) -> FiledRequirement:
    """File one requirement: on the forge when one is configured, else as a Markdown file;
    the one already filed for `source` when there is one."""
    title, body, labels = _checked(title, body, labels, source)
    existing = requirement_of_source(store, source)
    if existing is not None:
        return existing.filed()
    forge = _project_forge(project)
    if forge is not None:
        filed, filed_on = _file_on_forge(forge, title, body, labels), forge.forge.name
    else:
        filed, filed_on = _file_as_markdown(
            project, store, title=title, body=body, labels=labels, source=source, actor=actor
        )
    _record(store, filed, source=source, filed_on=filed_on, labels=labels, actor=actor)
    return filed


def _checked(
    title: str, body: str, labels: Sequence[str], source: str
) -> tuple[str, str, tuple[str, ...]]:
    title = " ".join(title.split())
    if not title:
        raise ConveyorError("a requirement needs a title")
    if not source.strip():
        raise ConveyorError("a requirement needs a source (what produced it)")
    words = (" ".join(label.split())[:50] for label in labels)
    cleaned = tuple(dict.fromkeys(label for label in words if label))
    return title[:MAX_TITLE], body[:MAX_BODY], cleaned[:MAX_LABELS]


# --- on the forge ---------------------------------------------------------------------


def _project_forge(project: Project) -> ForgeSettings | None:
    """The project's ForgeSettings, or None when conveyor.yml names no forge."""
    from conveyor.service.webhooks import load_project_forge

    found = load_project_forge(project, os.environ)
    return found.settings if found is not None else None


def _file_on_forge(
    settings: ForgeSettings, title: str, body: str, labels: tuple[str, ...]
) -> FiledRequirement:
    from conveyor.forge.issues import create_issue
    from conveyor.forge.model import NewIssue

    if not settings.token:
        raise ConveyorError(
            f"no token to open an issue on {settings.forge.name}",
            hint=f"set {TOKEN_VARIABLE} (or put it in .conveyor/forge.env), allowed to "
            "open issues on the repository",
        )
    if not settings.api_url:
        raise ConveyorError(
            f"no API URL for {settings.forge.name}", hint="set forge.api_url in conveyor.yml"
        )
    issue = NewIssue(settings.config.repository, title, body, labels)
    created = create_issue(settings.forge, settings.api_url, settings.token, issue)
    return FiledRequirement(f"#{created.number}", title, created.url)


# --- as a Markdown file -----------------------------------------------------------------


def _file_as_markdown(
    project: Project,
    store: Store,
    *,
    title: str,
    body: str,
    labels: tuple[str, ...],
    source: str,
    actor: str,
) -> tuple[FiledRequirement, str]:
    folder = project.directory / REQUIREMENTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    number = _next_number(store, folder)
    while True:  # another process may take a number between the look and the write
        key = f"{KEY_PREFIX}{number}"
        path = folder / f"{key}.md"
        try:
            with path.open("x", encoding="utf-8") as file:
                file.write(
                    markdown_text(
                        key,
                        title=title,
                        body=body,
                        labels=labels,
                        source=source,
                        actor=actor,
                        filed_at=time.time(),
                    )
                )
        except FileExistsError:
            number += 1
            continue
        relative = path.relative_to(project.directory).as_posix()
        return FiledRequirement(key, title, relative), MARKDOWN


def _next_number(store: Store, folder: Path) -> int:
    pattern = re.compile(rf"{KEY_PREFIX}(\d{{1,9}})")
    numbers = [
        int(m.group(1))
        for m in (pattern.fullmatch(p.stem) for p in folder.glob(f"{KEY_PREFIX}*.md"))
        if m
    ]
    with read_transaction(store.engine) as conn:
        keys = conn.execute(sa.select(schema.requirements.c.key)).scalars()
        numbers += [int(m.group(1)) for m in (pattern.fullmatch(k) for k in keys) if m]
    return max(numbers, default=0) + 1


def markdown_text(
    key: str,
    *,
    title: str,
    body: str,
    labels: tuple[str, ...],
    source: str,
    actor: str,
    filed_at: float,
) -> str:
    when = datetime.fromtimestamp(filed_at, UTC).isoformat(timespec="seconds")
    lines = [
        f"# {key}: {title}",
        "",
        f"- Source: {source}",
        f"- Filed by: {actor}, {when}",
        *([f"- Labels: {', '.join(labels)}"] if labels else []),
        "",
        body.strip() or "(no description)",
        "",
        f"A commit that addresses this says so in its message: `Refs {key}` or `Closes {key}`.",
    ]
    return "\n".join(lines) + "\n"


def commit_requirement_file(project: Project, filed: FiledRequirement) -> str:
    """Commit the requirement's Markdown file alone (whatever else is staged stays
    staged); returns the new commit's sha."""
    root = repo_root(project.directory)
    path = (project.directory / filed.location).resolve()
    relative = path.relative_to(root.resolve()).as_posix()
    run_git(root, "add", "--", relative)
    message = f"docs: file {filed.key}: {filed.title}"
    run_git(root, "commit", "--quiet", "--no-verify", "-m", message, "--only", "--", relative)
    return run_git(root, "rev-parse", "HEAD").decode().strip()


# --- the records ----------------------------------------------------------------------


def _record(
    store: Store,
    filed: FiledRequirement,
    *,
    source: str,
    filed_on: str,
    labels: tuple[str, ...],
    actor: str,
) -> None:
    row = {
        "key": filed.key,
        "title": filed.title,
        "source": source,
        "location": filed.location,
        "filed_on": filed_on,
        "labels": list(labels),
        "filed_by": actor,
        "filed_at": time.time(),
    }
    try:
        with write_transaction(store.engine) as conn:
            conn.execute(sa.insert(schema.requirements).values(**row))
    except sa.exc.IntegrityError:
        raise ConveyorError(
            f"requirement {filed.key} is already recorded",
            hint="`conveyor insights summary` lists the filed requirements",
        ) from None


def list_requirements(store: Store) -> list[Requirement]:
    """Every filed requirement, oldest first."""
    table = schema.requirements
    with read_transaction(store.engine) as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.id)).mappings().all()
    return [_requirement(row) for row in rows]


def requirement_of_source(store: Store, source: str) -> Requirement | None:
    table = schema.requirements
    with read_transaction(store.engine) as conn:
        row = (
            conn.execute(sa.select(table).where(table.c.source == source).order_by(table.c.id))
            .mappings()
            .first()
        )
    return _requirement(row) if row is not None else None


def _requirement(row: sa.RowMapping) -> Requirement:
    return Requirement(
        key=row["key"],
        title=row["title"],
        source=row["source"],
        location=row["location"],
        filed_on=row["filed_on"],
        labels=tuple(row["labels"] or ()),
        filed_by=row["filed_by"],
        filed_at=float(row["filed_at"]),
        addressed_by=row["addressed_by"],
        addressed_at=row["addressed_at"],
        closed=row["closed"],
    )


# --- link-back ------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkedBack:
    key: str
    sha: str
    closed: bool


def link_commits(project: Project, store: Store, until: str = "HEAD") -> list[LinkedBack]:
    """Mark each open requirement that a commit (reachable from `until`, made after it was
    filed) references by its key as addressed by the oldest such commit. A folder that is
    not a git repository, or has no commits, links nothing."""
    open_ones = {r.key: r for r in list_requirements(store) if r.addressed_by is None}
    if not open_ones:
        return []
    earliest = min(r.filed_at for r in open_ones.values()) - CLOCK_SKEW
    try:
        root = repo_root(project.directory)
        commits = links_between(
            root, until, repository=_repository(project), limit=MAX_SCANNED, after=earliest
        )
    except ConveyorError:
        return []
    linked: list[LinkedBack] = []
    for commit in reversed(commits):  # oldest first: the first commit that addressed it
        for key in commit.keys:
            requirement = open_ones.get(key)
            if requirement is None or commit.committed_at < requirement.filed_at - CLOCK_SKEW:
                continue
            closed = key in commit.closes
            if _mark_addressed(store, key, commit.sha, commit.committed_at, closed):
                linked.append(LinkedBack(key, commit.sha, closed))
            del open_ones[key]
    return linked


def _mark_addressed(store: Store, key: str, sha: str, at: float, closed: bool) -> bool:
    table = schema.requirements
    with write_transaction(store.engine) as conn:
        result = conn.execute(
            sa.update(table)
            .where(table.c.key == key, table.c.addressed_by.is_(None))
            .values(addressed_by=sha, addressed_at=at, closed=closed)
        )
    return result.rowcount == 1


def _repository(project: Project) -> str | None:
    """The forge's full name of the project's repository (to read `owner/repo#12`)."""
    try:
        settings = _project_forge(project)
    except ConveyorError:
        return None
    return settings.config.repository if settings is not None else None


__all__ = [
    "FiledRequirement",
    "LinkedBack",
    "Requirement",
    "RequirementState",
    "commit_requirement_file",
    "file_requirement",
    "link_commits",
    "list_requirements",
    "local_key",
    "requirement_of_source",
]
