"""Requirements out: an actionable insight or a closed incident filed as a requirement,
on the forge (its issues API) or as a Markdown file in the repository; a later commit
that references it links back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.service.project import Project
from conveyor.store.store import Store


@dataclass(frozen=True)
class FiledRequirement:
    key: str  # the id a commit references: "#123" on a forge, "REQ-7" for a Markdown file
    title: str
    location: str  # the URL, or the Markdown file's path in the repository


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
    """File one requirement (implemented by the requirements part)."""
    raise NotImplementedError
