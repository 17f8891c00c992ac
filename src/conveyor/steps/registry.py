"""The one dict of built-in steps. Adding a step = one module and one line here."""

from __future__ import annotations

from conveyor.steps.archive import ArchiveStep
from conveyor.steps.base import Step
from conveyor.steps.build_image import BuildImageStep
from conveyor.steps.lint import LintStep
from conveyor.steps.push import PushStep
from conveyor.steps.sast import SastStep
from conveyor.steps.scan_image import ScanImageStep
from conveyor.steps.secrets import SecretsStep
from conveyor.steps.shell import ShellStep
from conveyor.steps.sign import SignStep
from conveyor.steps.testing import TestStep

STEPS: dict[str, Step] = {
    ShellStep.name: ShellStep(),
    ArchiveStep.name: ArchiveStep(),
    LintStep.name: LintStep(),
    SastStep.name: SastStep(),
    SecretsStep.name: SecretsStep(),
    TestStep.name: TestStep(),
    BuildImageStep.name: BuildImageStep(),
    ScanImageStep.name: ScanImageStep(),
    SignStep.name: SignStep(),
    PushStep.name: PushStep(),
}


def step_names() -> list[str]:
    return sorted(STEPS)
