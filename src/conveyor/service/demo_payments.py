"""The demo's payments chapters: the shop's payment provider, a Conveyor project of its
own beside the shop, whose pipeline verifies the shop's contract (the pact the shop's
`contract` job records) before it deploys. A breaking change to its API is stopped with
the interaction it would break; a compatible one goes through (docs/contracts.md)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from conveyor.service.project import Project
from conveyor.states import RunState

PAYMENTS = "payments"


class ChapterOf(Protocol):
    def __call__(self, title: str, expected: RunState, on: Project) -> object: ...


def payments_chapters(
    shop_repository: Path,
    sample_dir: Path,
    chapter: ChapterOf,
    make_repository: Callable[[Path, Path, str], Path],
    apply: Callable[[Path, Path, str], None],
) -> list[str]:
    """Chapters 10 to 12; returns why can-i-deploy refused the breaking change to
    production (empty if it did not)."""
    sample = sample_dir.parent / PAYMENTS
    repository = make_repository(
        sample, shop_repository.parent / PAYMENTS, "Payments: first version"
    )
    project = Project.locate(repository / "conveyor.yml")
    changes = sample / "demo-changes"
    chapter(
        f"10. the payments service, the shop's payment provider, in {repository}: its "
        "pipeline verifies the shop's contract (the pact the shop's releases in staging and "
        "production recorded) against this commit, then deploys to staging and production",
        RunState.SUCCESS,
        project,
    )
    apply(changes / "1-breaking-api", repository, "Payments: the answer's status is now state")
    chapter(
        "11. a breaking change to the payments API: the shop's contract fails verification, "
        "and the release is refused before staging, naming the interaction that would break",
        RunState.FAILED,
        project,
    )
    refusal = refusal_of_production(project, repository)
    apply(changes / "2-compatible-change", repository, "Payments: an optional receipt URL")
    chapter(
        "12. a compatible change (status back, an optional receipt URL): verified, deployed",
        RunState.SUCCESS,
        project,
    )
    return refusal


def refusal_of_production(project: Project, repository: Path) -> list[str]:
    """`conveyor can-i-deploy payments@HEAD --to production`, as reasons."""
    from conveyor.service.contracts import can_i_deploy

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True
    ).stdout.strip()
    with project.open_store() as store:
        answer = can_i_deploy(project, store, PAYMENTS, head, "production")
    return (
        [] if answer.ok else [f"payments@{head[:12]} to production: {r}" for r in answer.reasons()]
    )
