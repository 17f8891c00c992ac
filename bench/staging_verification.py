"""Staging verification of the sample service: E2E, 30 s of load and DAST, end to end.

Each round deploys the shop (examples/shop, 2 replicas behind the builtin router, the
process runtime) to a fresh staging, then runs the three steps as the shop's pipeline
does, one after the other: `e2e`, `dast`, then `perf` with 30 s of load (10 users). Each
step's wall time is measured from its `finalize` call, target check included, to its
verdict. The goal (issue 7): all three together in at most 90 s on 2 cores.

    .venv/bin/python bench/staging_verification.py --repeat 3
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from rich.table import Table

from common import Figure, console, header, print_figures, repeat_parser
from conveyor.engine.executors.base import ExecResult, Stream
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import NoEvidence, StepContext
from conveyor.spec.gates import FailLevel, FindingsGate, Gates
from conveyor.steps.dast import DastParams, DastStep
from conveyor.steps.e2e import E2eParams, E2eStep
from conveyor.steps.perf import PerfParams, PerfStep

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.verify
from tests.verify.shop_staging import SHOP, shop_in_staging

GOAL_SECONDS = 90.0
LOAD = "30s"


class Quiet:
    """A job log that keeps nothing: the benchmark reports times, not logs."""

    def write(self, stream: Stream, line: str) -> None:
        return None


def context(workspace: Path, job: str) -> StepContext:
    bin_dir = str(Path(sys.executable).parent)
    env = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "HOME": str(workspace)}
    gates = Gates(findings=FindingsGate(fail_on=FailLevel.WARNING))  # the shop's own gate
    return StepContext(
        job_id=job,
        workspace=workspace,
        env=env,
        timeout=300,
        executor=LocalExecutor(),
        log=Quiet(),
        evidence=NoEvidence(gates),
    )


async def timed(label: str, work: Coroutine[Any, Any, ExecResult]) -> tuple[str, float, bool]:
    started = time.perf_counter()
    result = await work
    return label, time.perf_counter() - started, result.ok


async def one_round(url: str, workspace: Path) -> dict[str, float]:
    e2e = E2eStep().finalize(E2eParams(url=url), context(workspace, "e2e"), None)
    dast = DastStep().finalize(DastParams(url=url), context(workspace, "dast"), None)
    perf_params = PerfParams(url=url, duration=LOAD, users=10)
    perf = PerfStep().finalize(perf_params, context(workspace, "perf"), None)
    started = time.perf_counter()
    steps = [await timed("e2e", e2e), await timed("dast", dast), await timed("perf", perf)]
    total = time.perf_counter() - started
    failed = [label for label, _, ok in steps if not ok]
    if failed:
        raise RuntimeError(f"steps failed on the clean shop: {failed}")
    return {label: seconds for label, seconds, _ in steps} | {"total": total}


def measure(repeat: int) -> list[Figure]:
    header(f"staging verification of the shop: e2e, dast, perf ({LOAD}), {repeat} rounds")
    rounds: list[dict[str, float]] = []
    for index in range(repeat):
        with tempfile.TemporaryDirectory(prefix="bench-staging-") as scratch:
            root = Path(scratch)
            workspace = root / "workspace"
            shutil.copytree(SHOP, workspace, ignore=shutil.ignore_patterns("__pycache__"))
            with shop_in_staging(root / "project") as staging:
                rounds.append(asyncio.run(one_round(staging.url, workspace)))
        console.print(
            f"round {index + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rounds[-1].items())
        )
    table = Table("step", "median s", "min s", "max s")
    for label in ("e2e", "dast", "perf", "total"):
        values = [r[label] for r in rounds]
        table.add_row(
            label, f"{statistics.median(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}"
        )
    console.print(table)
    total = statistics.median(r["total"] for r in rounds)
    return [Figure("e2e + dast + perf (30 s load) in staging", total, "s", GOAL_SECONDS)]


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    print_figures("medians", measure(args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
