"""The demo's payments chapters: the shop's payment provider, a Conveyor project of its
own beside the shop, whose pipeline verifies the shop's contract (the pact the shop's
`contract` job records) and runs the quality gate before it deploys. Once payments runs,
the shop pays its orders through it, in staging and in production. A breaking change to
the payments API is stopped with the interaction it would break; a compatible one goes
through (docs/contracts.md)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from conveyor.errors import ConveyorError
from conveyor.service.project import Project
from conveyor.states import RunState

PAYMENTS = "payments"
# Where each environment's `env:` block of the shop's conveyor.yml gets PAYMENTS_URL: the
# line it goes after (the demo edits its own file, as a developer would).
_ANCHORS = {
    "staging": re.compile(r"^  staging:\n", re.M),
    "production": re.compile(r"^      CONVEYOR_FLAGS_URL: \S+\n", re.M),
}


class ChapterOf(Protocol):
    def __call__(self, title: str, expected: RunState, on: Project) -> object: ...


def payments_chapters(
    shop: Project,
    sample_dir: Path,
    chapter: ChapterOf,
    *,
    make_repository: Callable[[Path, Path, str], Path],
    apply: Callable[[Path, Path, str], None],
    commit: Callable[[Path, str], None],
) -> list[str]:
    """Chapters 11 to 14; returns why can-i-deploy refused the breaking change to
    production (empty if it did not)."""
    sample = sample_dir.parent / PAYMENTS
    repository = make_repository(
        sample, shop.directory.parent / PAYMENTS, "Payments: first version"
    )
    project = Project.locate(repository / "conveyor.yml")
    changes = sample / "demo-changes"
    chapter(
        f"11. the payments service, the shop's payment provider, in {repository}: its "
        "pipeline runs the quality gate, verifies the shop's contract (the pact of each shop "
        "release in staging and production) against this commit, then deploys both",
        RunState.SUCCESS,
        project,
    )
    pay_through_payments(shop, project)
    commit(shop.directory, "Checkout: pay each order through the payments service")
    chapter(
        "12. the shop pays through the payments service, in staging (its E2E, DAST and load "
        "tests against both) and in production (a canary again)",
        RunState.SUCCESS,
        shop,
    )
    apply(changes / "1-breaking-api", repository, "Payments: the answer's status is now state")
    chapter(
        "13. a breaking change to the payments API: the shop's contract fails verification, "
        "and the release is refused before staging, naming the interaction that would break",
        RunState.FAILED,
        project,
    )
    refusal = refusal_of_production(project, repository)
    apply(changes / "2-compatible-change", repository, "Payments: an optional receipt URL")
    chapter(
        "14. a compatible change (status back, an optional receipt URL): verified, deployed",
        RunState.SUCCESS,
        project,
    )
    return refusal


def pay_through_payments(shop: Project, payments: Project) -> None:
    """PAYMENTS_URL in the shop's staging and production: payments' router in each."""
    from conveyor.service.environments import list_environments

    with payments.open_store() as store:
        urls = {view.name: view.url for view in list_environments(payments, store) if view.url}
    text = shop.spec_path.read_text()
    for environment, anchor in _ANCHORS.items():
        found = anchor.search(text)
        if environment not in urls or found is None:
            raise ConveyorError(f"the demo cannot point the shop's {environment} at payments")
        line = f"      PAYMENTS_URL: {urls[environment]}   # the payments service's router\n"
        block = "    env:\n" if environment == "staging" else ""  # staging had no env: yet
        text = text[: found.end()] + block + line + text[found.end() :]
    shop.spec_path.write_text(text)


def refusal_of_production(project: Project, repository: Path) -> list[str]:
    """`conveyor can-i-deploy payments@HEAD --to production`, as reasons."""
    from conveyor.service.contracts import can_i_deploy

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repository, capture_output=True, text=True, check=True
    ).stdout.strip()
    with project.open_store() as store:
        answer = can_i_deploy(project, store, PAYMENTS, head, "production")
    label = f"payments@{head[:12]} to production"
    return [] if answer.ok else [f"{label}: {reason}" for reason in answer.reasons()]
