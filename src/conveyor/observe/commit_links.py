"""Commits and the requirements and defects they link: a commit's message read once
(`conveyor.vcs.commit_messages` parses it; the commit-message gate, a step below this
layer, uses the same parser) into what release notes and requirements need: its type,
whether it breaks something, and the keys it closes or references.

A key names an issue one way whatever the spelling: `acme/shop#12` is `#12` when
acme/shop is the project's own repository (`forge.repository` in conveyor.yml).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.vcs.commit_messages import (
    CommitMessage,
    LinkKind,
    ParsedMessage,
    Reference,
    log_messages,
    parse_message,
)

__all__ = [
    "CommitLinks",
    "LinkKind",
    "ParsedMessage",
    "Reference",
    "commit_links",
    "grouped_notes",
    "links_between",
    "local_key",
    "notes_markdown",
    "parse_message",
]


@dataclass(frozen=True)
class CommitLinks:
    sha: str
    author: str
    committed_at: float
    subject: str
    type: str | None  # the Conventional Commits type; None when the header is not one
    scope: str | None
    breaking: bool
    breaking_notes: tuple[str, ...]
    closes: tuple[str, ...]  # keys, as `local_key` spells them
    refs: tuple[str, ...]
    merge: bool

    @property
    def keys(self) -> tuple[str, ...]:
        return (*self.closes, *self.refs)

    @property
    def short_subject(self) -> str:
        """The subject without its `type(scope)!:` header."""
        parsed = parse_message(self.subject)
        return parsed.header.subject if parsed.header is not None else self.subject


def local_key(key: str, repository: str | None) -> str:
    """`owner/repo#12` as `#12` when owner/repo is the project's repository."""
    prefix, hash_, number = key.rpartition("#")
    if hash_ and prefix and repository and prefix.casefold() == repository.casefold():
        return f"#{number}"
    return key


def commit_links(commit: CommitMessage, repository: str | None = None) -> CommitLinks:
    parsed = parse_message(commit.message)
    closes = [r.key for r in parsed.references if r.kind is LinkKind.CLOSES]
    refs = [r.key for r in parsed.references if r.kind is LinkKind.REFERENCES]
    header = parsed.header
    return CommitLinks(
        sha=commit.sha,
        author=commit.author,
        committed_at=commit.committed_at,
        subject=parsed.subject,
        type=header.type if header is not None else None,
        scope=header.scope if header is not None else None,
        breaking=parsed.breaking,
        breaking_notes=parsed.breaking_notes,
        closes=tuple(dict.fromkeys(local_key(k, repository) for k in closes)),
        refs=tuple(dict.fromkeys(local_key(k, repository) for k in refs)),
        merge=parsed.merge,
    )


def links_between(
    directory: Path,
    until: str,
    since: str | None = None,
    *,
    repository: str | None = None,
    limit: int | None = None,
    after: float | None = None,
) -> list[CommitLinks]:
    """Newest first: the links of each commit reachable from `until` and not `since`."""
    commits = log_messages(directory, until, since, limit=limit, after=after)
    return [commit_links(commit, repository) for commit in commits]


# --- release notes: the commits of a release grouped by what they are --------------------

NOTE_GROUPS = ("features", "fixes", "others")  # in the order notes list them


def note_group(links: CommitLinks) -> str:
    if links.type == "feat":
        return "features"
    if links.type == "fix":
        return "fixes"
    return "others"


def note_entry(links: CommitLinks) -> dict[str, Any]:
    return {
        "sha": links.sha,
        "subject": links.short_subject,
        "type": links.type,
        "scope": links.scope,
        "breaking": links.breaking,
        "closes": list(links.closes),
        "refs": list(links.refs),
        "author": links.author,
    }


def grouped_notes(commits: Sequence[CommitLinks]) -> dict[str, Any]:
    """Release notes of `commits` (newest first): features, fixes and others with their
    linked ids, the breaking changes, and every id linked. Merge commits git wrote are
    left out: the commits they merge are listed."""
    notes: dict[str, Any] = {group: [] for group in NOTE_GROUPS}
    breaking: list[dict[str, Any]] = []
    linked: dict[str, None] = {}
    for commit in commits:
        if commit.merge:
            continue
        entry = note_entry(commit)
        notes[note_group(commit)].append(entry)
        if commit.breaking:
            breaking.append({**entry, "notes": list(commit.breaking_notes)})
        linked.update(dict.fromkeys(commit.keys))
    return {**notes, "breaking": breaking, "linked": list(linked)}


def notes_markdown(notes: Mapping[str, Any]) -> list[str]:
    """The notes' lines in Markdown (a section per group that has commits)."""
    titles = {"breaking": "Breaking changes", "features": "Features", "fixes": "Fixes"}
    titles["others"] = "Others"
    lines: list[str] = []
    for group in ("breaking", *NOTE_GROUPS):
        entries = notes.get(group) or []
        if not entries:
            continue
        lines += ["", f"### {titles[group]}", ""]
        lines += [_note_line(entry) for entry in entries]
    linked = notes.get("linked") or []
    lines += ["", f"Linked: {', '.join(linked) if linked else 'none'}"]
    return lines


def _note_line(entry: Mapping[str, Any]) -> str:
    scope = f"**{entry['scope']}**: " if entry.get("scope") else ""
    ids = [f"closes {k}" for k in entry.get("closes", [])]
    ids += [f"refs {k}" for k in entry.get("refs", [])]
    suffix = f" ({', '.join(ids)})" if ids else ""
    return f"- {scope}{entry.get('subject', '')} `{str(entry.get('sha', ''))[:12]}`{suffix}"
