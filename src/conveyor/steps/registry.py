"""The one table of built-in steps. Adding a step = one module and one line here.

The host (`service/`) hands this table to the spec loader (`STEP_PARAMS`) and to the
engine (`STEPS`); neither imports it. The `shell` step that runs `run:` jobs is the
engine's own (`engine/shell.py`).

Steps are imported when first used: a pipeline of `run:` jobs never loads the scanners'
or the supply chain's modules, which keeps `conveyor lint` and `conveyor run` quick to
start.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from pydantic import BaseModel

from conveyor.engine.step import Step

_STEP_CLASSES: dict[str, str] = {
    "shell": "conveyor.engine.shell:ShellStep",
    "archive": "conveyor.steps.archive:ArchiveStep",
    "lint": "conveyor.steps.lint:LintStep",
    "sast": "conveyor.steps.sast:SastStep",
    "secrets": "conveyor.steps.secrets:SecretsStep",
    "test": "conveyor.steps.testing:TestStep",
    "build-image": "conveyor.steps.build_image:BuildImageStep",
    "scan-image": "conveyor.steps.scan_image:ScanImageStep",
    "sign": "conveyor.steps.sign:SignStep",
    "push": "conveyor.steps.push:PushStep",
    "deploy": "conveyor.steps.deploy:DeployStep",
    "e2e": "conveyor.steps.e2e:E2eStep",
    "perf": "conveyor.steps.perf:PerfStep",
    "dast": "conveyor.steps.dast:DastStep",
    "commit-messages": "conveyor.steps.commit_messages:CommitMessagesStep",
    "quality": "conveyor.steps.quality:QualityStep",
    "contract": "conveyor.steps.contract:ContractStep",
    "contract-verify": "conveyor.steps.contract_verify:ContractVerifyStep",
}


class _Steps(Mapping[str, Step]):
    """A read-only mapping of step name to step, importing each on first access."""

    def __init__(self) -> None:
        self._loaded: dict[str, Step] = {}

    def __getitem__(self, name: str) -> Step:
        if name not in self._loaded:
            module_name, _, class_name = _STEP_CLASSES[name].partition(":")
            step: Step = getattr(importlib.import_module(module_name), class_name)()
            if step.name != name:
                raise RuntimeError(f"step {class_name} is named {step.name!r}, listed as {name!r}")
            self._loaded[name] = step
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(_STEP_CLASSES)

    def __len__(self) -> int:
        return len(_STEP_CLASSES)


class _StepParams(Mapping[str, type[BaseModel]]):
    """Step name to the model of its `with:`, for the spec loader (imports a step on use)."""

    def __getitem__(self, name: str) -> type[BaseModel]:
        return STEPS[name].params_model

    def __iter__(self) -> Iterator[str]:
        return iter(_STEP_CLASSES)

    def __len__(self) -> int:
        return len(_STEP_CLASSES)


STEPS: Mapping[str, Step] = _Steps()
STEP_PARAMS: Mapping[str, type[BaseModel]] = _StepParams()


def step_names() -> list[str]:
    return sorted(_STEP_CLASSES)
