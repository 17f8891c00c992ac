"""Where the scanner steps find their tools: Conveyor's own tool environment by default.

A job's PATH is whatever the machine running it has: a `ruff` there may be another
version or missing, and `python -m ruff` names whichever interpreter comes first. So
`lint`, `sast` and `secrets` run the tools installed with the interpreter that runs
Conveyor (its virtualenv's `bin`; `<venv>/tools/<tool>/bin` for a tool that needs a
virtualenv of its own, as semgrep does; else `python -m <module>` with that very
interpreter), unless the job says `tools_from: path`. The log names the tool, its version
and where it came from.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from conveyor.engine.step import StepContext, failed
from conveyor.engine.tool_output import ScanFailed

SCANNERS_EXTRA = "pip install 'conveyor[scanners]'"
# Scanners that pin their own dependencies, so they are not in the extra: a venv of their own.
OWN_VENV_HINTS = {
    "semgrep": "pip install semgrep into a virtualenv of its own (it pins its dependencies) "
    "and link its semgrep into Conveyor's bin folder; `make .venv/bin/semgrep` does both",
}
# The module `python -m` runs for a tool installed as a package but without its script.
MODULES = {"ruff": "ruff", "bandit": "bandit", "detect-secrets": "detect_secrets"}
MODULES["lizard"] = "lizard"  # the quality step's; jscpd is a binary (its script only)


class ToolSource(StrEnum):
    CONVEYOR = "conveyor"  # installed with the interpreter running Conveyor
    PATH = "path"  # the job's PATH, for a project that pins its own tool versions

    @property
    def origin(self) -> str:
        return "Conveyor's tool environment" if self is ToolSource.CONVEYOR else "the job's PATH"


@dataclass(frozen=True)
class ToolEnvironment:
    """Folders holding Conveyor's tools, and the interpreter for `python -m` (if any)."""

    bin_dirs: tuple[Path, ...]
    interpreter: Path | None = None

    @classmethod
    def current(cls) -> ToolEnvironment:
        # Not resolved: a virtualenv's python is a link to the base interpreter.
        interpreter = Path(sys.executable)
        dirs = dict.fromkeys([interpreter.parent, Path(sysconfig.get_path("scripts"))])
        return cls(tuple(dirs), interpreter)

    def find(self, tool: str) -> list[str] | None:
        """The argv prefix that runs `tool` from this environment, or None."""
        for folder in self.bin_dirs:
            for candidate in (folder / tool, folder.parent / "tools" / tool / "bin" / tool):
                if candidate.is_file() and os.access(candidate, os.X_OK):
                    return [str(candidate)]
        module = MODULES.get(tool)
        if self.interpreter is not None and module and importlib.util.find_spec(module):
            return [str(self.interpreter), "-m", module]
        return None


@dataclass(frozen=True)
class ResolvedTool:
    name: str
    argv: list[str]  # the prefix: the executable, or the interpreter and `-m module`
    source: ToolSource

    def provenance(self, version: str) -> str:
        """`ruff 0.6.9 from Conveyor's tool environment (/opt/conveyor/bin/ruff)`."""
        return f"{self.name} {version} from {self.source.origin} ({' '.join(self.argv)})"


def locate_tool(
    ctx: StepContext,
    tool: str,
    source: ToolSource,
    environment: ToolEnvironment | None = None,
) -> ResolvedTool:
    """The tool from `source`; a clear failure (never the other source) when it is not there."""
    if source is ToolSource.PATH:
        found = ctx.which(tool)
        if found is None:
            raise _missing(tool, "on the job's PATH", OWN_VENV_HINTS.get(tool, SCANNERS_EXTRA))
        return ResolvedTool(tool, [found], source)
    environment = environment or ToolEnvironment.current()
    argv = environment.find(tool)
    if argv is None:
        where = ", ".join(str(folder) for folder in environment.bin_dirs)
        hint = OWN_VENV_HINTS.get(tool, f"{SCANNERS_EXTRA} with the interpreter running Conveyor")
        raise _missing(
            tool,
            f"in Conveyor's tool environment ({where})",
            f"{hint}; or set `tools_from: path` to run the one on the job's PATH",
        )
    return ResolvedTool(tool, argv, source)


def _missing(tool: str, where: str, hint: str) -> ScanFailed:
    return ScanFailed(failed(f"{tool} is not installed {where}: {hint}", exit_code=None))
