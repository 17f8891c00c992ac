"""The one dict of built-in steps. Adding a step = one module and one line here."""

from __future__ import annotations

from conveyor.steps.archive import ArchiveStep
from conveyor.steps.base import Step
from conveyor.steps.shell import ShellStep

STEPS: dict[str, Step] = {
    ShellStep.name: ShellStep(),
    ArchiveStep.name: ArchiveStep(),
}


def step_names() -> list[str]:
    return sorted(STEPS)
