"""`conveyor init --explain`: each finding, the value written, and where it was seen."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from conveyor.spec.detect.model import Clue, Detection
from conveyor.spec.starter import DATA_DIR, SERVERS, comment, server_command, server_package


@dataclass(frozen=True)
class Finding:
    what: str  # framework, app, server, ...
    value: str  # what conveyor.yml says about it ("" when nothing was found)
    why: str  # file:line: what was seen there, or why nothing was written

    def to_json(self) -> dict[str, str]:
        return {"what": self.what, "value": self.value, "why": self.why}


def _why(clue: Clue | None) -> str:
    return comment(clue) if clue is not None else ""


def findings(found: Detection) -> list[Finding]:
    rows: list[Finding] = []
    if found.framework is not None:
        rows.append(Finding("framework", found.framework.value, _why(found.framework_clue)))
    if found.app is not None and found.framework is not None:
        rows.append(Finding("app", str(found.app), _why(found.app_clue)))
        name = SERVERS[found.framework.interface][0]
        added = server_package(found)
        how = f"added to the image ({added})" if added else "the dependencies name it"
        command = shlex.join(server_command(found))
        rows.append(Finding("server", f"{name} ({found.framework.interface.value.upper()})", how))
        rows.append(Finding("entrypoint", command, "the image's entrypoint"))
    if found.package is not None:
        rows.append(Finding("package", found.package.value, _why(found.package.clue)))
    rows += [Finding("dependencies", d.path, _why(d.clue)) for d in found.dependencies]
    if found.tests is not None:
        tests = found.tests
        env = [*tests.requirements, *(f"extra [{e}]" for e in tests.extras)]
        value = f"{tests.folder}: {shlex.join(tests.command)}"
        rows.append(Finding("tests", value, _why(tests.clue)))
        if env:
            rows.append(Finding("test env", ", ".join(env), "test tools for the project's venv"))
    rows += _deployment(found)
    return rows


def _deployment(found: Detection) -> list[Finding]:
    rows: list[Finding] = []
    if found.health is not None:
        rows.append(Finding("health", found.health.value, _why(found.health.clue)))
    elif found.framework is not None:
        rows.append(Finding("health", "", "no health route: readiness is a TCP connect"))
    if found.home is not None:
        rows.append(Finding("smoke", f"GET {found.home.value}", _why(found.home.clue)))
    for setting in found.data:
        value = f"{setting.variable}={DATA_DIR}/{setting.filename}"
        rows.append(Finding("data", value, _why(setting.clue)))
    for secret in found.secrets:
        rows.append(Finding("secret", secret.variable, _why(secret.clue)))
    for task in found.tasks:
        value = f"{task.name}: {shlex.join(task.command)}"
        rows.append(Finding("hook", value, _why(task.clue)))
    return rows


def summary(found: Detection) -> str:
    """One line: what kind of project conveyor init saw."""
    if found.framework is None:
        return "no Python web app"
    if found.app is None:
        return f"a {found.framework.value} project without an application object"
    server = SERVERS[found.framework.interface][0]
    return f"a {found.framework.value} app ({found.app}, served by {server})"
