"""Shared helpers of the benchmarks: timing subprocesses, medians, tables, the machine.

Benchmarks are plain scripts, not tests: they compare side by side in one run (alternating,
so a noisy neighbour slows both sides alike) and report medians and ratios.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

import conveyor
from conveyor.service.demo import make_repository

console = Console(highlight=False)
PYTHON = sys.executable
# The console script of this interpreter's environment, the one `make bench` installed.
CONVEYOR = str(Path(sys.executable).parent / "conveyor")
DEFAULT_REPEAT = 5


@dataclass(frozen=True)
class Figure:
    """One headline number of a benchmark, with its goal when it has one."""

    name: str
    value: float
    unit: str
    goal: float | None = None  # the value must be <= goal

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "met" if self.value <= self.goal else "MISSED"


@dataclass
class Samples:
    """Wall times (seconds) of one contender, collected across rounds."""

    label: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def row(self, baseline: Samples | None = None) -> list[str]:
        ratio = f"{self.median / baseline.median:.2f}x" if baseline else ""
        return [
            self.label,
            f"{self.median:.3f}",
            f"{min(self.seconds):.3f}",
            f"{max(self.seconds):.3f}",
            str(len(self.seconds)),
            ratio,
        ]


class CommandFailedError(RuntimeError):
    """A benchmarked command exited non-zero: the measurement would be meaningless."""


def time_command(
    argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> float:
    """Wall time of a whole subprocess, start-up included; fails loudly on a non-zero exit."""
    started = time.perf_counter()
    done = subprocess.run(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        capture_output=True,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace").strip()
        raise CommandFailedError(f"{' '.join(argv)} exited {done.returncode}:\n{output[-2000:]}")
    return took


def alternate(contenders: Mapping[str, Callable[[], float]], repeat: int) -> dict[str, Samples]:
    """Run each contender once per round, `repeat` rounds, so they share the machine's mood."""
    samples = {label: Samples(label) for label in contenders}
    for _ in range(repeat):
        for label, measure in contenders.items():
            samples[label].seconds.append(measure())
    return samples


def print_samples(title: str, samples: Sequence[Samples], baseline: Samples | None) -> None:
    """A table of medians; the ratio column divides by `baseline`'s median."""
    console.print(f"[bold]{title}[/]")
    table = Table(box=None, pad_edge=False)
    for column in ("", "median s", "min s", "max s", "n", "ratio"):
        table.add_column(column, justify="left" if not column else "right")
    for entry in samples:
        table.add_row(*entry.row(baseline))
    console.print(table)


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    console.print(f"[bold]{title}[/]")
    table = Table(box=None, pad_edge=False)
    for column in ("figure", "value", "goal", ""):
        table.add_column(column, justify="left" if column in ("figure", "") else "right")
    for figure in figures:
        goal = f"<= {figure.goal:g} {figure.unit}" if figure.goal is not None else ""
        table.add_row(figure.name, f"{figure.value:.3f} {figure.unit}", goal, figure.verdict)
    console.print(table)


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def machine_summary() -> str:
    cores = len(os.sched_getaffinity(0))  # what `nproc` prints
    return f"{cores} cores ({cpu_model()}), Python {platform.python_version()}, {platform.system()}"


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Conveyor settings that would redirect its state."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(extra)
    return env


def committed_repository(files: Mapping[str, str], parent: Path) -> Path:
    """A git repository under `parent` whose one commit holds `files` (relative path -> text)."""
    with tempfile.TemporaryDirectory(prefix="bench-src-") as staging:
        for relative, text in files.items():
            target = Path(staging) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return make_repository(Path(staging), parent / "repo")


def repeat_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=DEFAULT_REPEAT,
        help=f"rounds per contender (default: {DEFAULT_REPEAT})",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def header(title: str) -> None:
    console.rule(f"[bold]{title}")
    console.print(f"[dim]{machine_summary()}[/]")
    compile_conveyor()


def compile_conveyor() -> None:
    """Compile Conveyor's modules once, as installing it does: with
    PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) and no bytecode on
    disk, every timed run would compile them again, about 0.1 s no user pays."""
    compileall.compile_dir(Path(conveyor.__file__).parent, quiet=1)


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 now (the kernel's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
