"""The `perf` step: a Locust load test against a running environment, judged by thresholds
and against the previous release's result.

    perf:
      needs: [deploy-staging]
      uses: perf
      with:
        environment: staging
        users: 20
        duration: 30s
        thresholds: {p95: 200ms, p99: 500ms, error_rate: 1, min_rps: 15}
        max_regression: 20

`with:` keys:
- `environment` (an environment of conveyor.yml) or `url` (any base URL): exactly one.
- `locustfile` (default `perf/locustfile.py`): the load profile, a path in the workspace.
- `users` (default 10): concurrent simulated users; `spawn_rate` (default: `users`, all
  started in the first second): users started per second.
- `duration` (default 30s, at least 1s; whole seconds): how long the load runs.
- `thresholds`: `p95` and `p99` (durations: highest latency percentiles), `error_rate`
  (highest % of failed requests; default 1, `null` to allow any), `min_rps` (lowest
  throughput in requests/s). Unset ones are not checked.
- `max_regression` (percent, default 20): p95, p99 and throughput are compared with this
  job's result in the target branch's last successful run (on main: the previous
  release). A change for the worse beyond it fails the step, naming the metric, both
  values and the change. With no such result, or one made with other `users`,
  `spawn_rate` or another locustfile, nothing is compared (the log and report say so).
- `latency_tolerance` (default 5ms): latency changes no larger than this are never a
  regression (Locust rounds latencies, and a few ms on a fast service is noise).

The step fails when the target does not answer, when Locust is missing, crashes or leaves
no statistics, when the locustfile raises, when no request was made, when a threshold is
not met, or on a regression. Failed requests alone do not crash it: they count against
`error_rate`. Latencies are Locust's rounded bucket values (see conveyor.verify.perf_stats).

Everything happens in `finalize` (a running environment is no cacheable input). Locust
runs as a subprocess (its gevent monkey-patching stays out of Conveyor); its files go to
`.conveyor-out/<job>/perf/` (`stats.json`, Locust's `report.html`, `perf.json`), and the
"perf" report is published: target, settings, totals, endpoints, failures, threshold
checks, the comparison, passed and reasons.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, Field, field_validator, model_validator

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import (
    FinalizeOnlyStep,
    StepContext,
    ToolRun,
    failed,
    job_output_dir,
    passed,
)
from conveyor.spec.durations import format_duration
from conveyor.spec.types import Duration, WorkspacePath
from conveyor.verify.perf import (
    LoadSettings,
    PerfThresholds,
    PerfVerdict,
    compare,
    judge,
    read_baseline,
)
from conveyor.verify.perf_report import (
    change_lines,
    perf_report,
    report_summary,
    stats_table,
)
from conveyor.verify.perf_stats import LoadStats, StatsUnreadable, parse_stats
from conveyor.verify.target import (
    Target,
    TargetParams,
    TargetUnavailable,
    answering_target,
    reason_of,
)

KIND = "perf"
PLUGIN = "locust_report.py"  # conveyor/verify/locust_report.py, handed to Locust
STOP_TIMEOUT = 5  # seconds users get to finish the request in flight when time is up
LOCUST_OK = (0, 1)  # 1: some request failed, which the statistics judge
NOT_INSTALLED = "no `locust` on the job's PATH: pip install locust"


class PerfParams(TargetParams):
    locustfile: WorkspacePath = Field(
        default="perf/locustfile.py", description="The Locust file, a path in the workspace."
    )
    users: int = Field(default=10, ge=1, description="Concurrent simulated users.")
    spawn_rate: float | None = Field(
        default=None, gt=0, description="Users started per second (default: `users`)."
    )
    duration: Duration = Field(default=30.0, description="How long the load runs (>= 1s).")
    thresholds: PerfThresholds = Field(
        default_factory=PerfThresholds, description="Limits the run must meet."
    )
    max_regression: float = Field(
        default=20.0,
        ge=0,
        description="Percent p95, p99 or throughput may worsen against the previous result.",
    )
    latency_tolerance: Duration = Field(
        default=0.005, description="Latency changes this small are never a regression."
    )

    @field_validator("locustfile")
    @classmethod
    def _one_file(cls, value: str) -> str:
        if "," in value:  # Locust reads a comma as a list of files
            raise ValueError("locustfile must not contain a comma")
        return value

    @model_validator(mode="after")
    def _whole_run(self) -> PerfParams:
        if self.duration < 1:
            raise ValueError("duration must be at least 1s")
        return self

    @property
    def users_per_second(self) -> float:
        return self.spawn_rate if self.spawn_rate is not None else float(self.users)

    @property
    def run_seconds(self) -> int:
        """Locust's --run-time takes whole seconds."""
        return math.ceil(self.duration)


class PerfStep(FinalizeOnlyStep):
    name: ClassVar[str] = "perf"
    params_model: ClassVar[type[BaseModel]] = PerfParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "a running service is no input"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, PerfParams)
        started = time.monotonic()
        outcome = await _load_test(params, ctx)
        return replace(outcome, duration=time.monotonic() - started)


async def _load_test(params: PerfParams, ctx: StepContext) -> ExecResult:
    try:
        target = await answering_target(params, ctx.environments)
    except TargetUnavailable as error:
        return _fail(ctx, f"perf: {reason_of(error)}")
    locustfile = ctx.workspace / params.locustfile
    if not locustfile.is_file():
        return _fail(
            ctx,
            f"perf: the locustfile {params.locustfile} does not exist in the workspace "
            "(write one, or point `locustfile:` at it)",
        )
    settings = LoadSettings(
        users=params.users,
        spawn_rate=params.users_per_second,
        duration=params.run_seconds,
        locustfile=params.locustfile,
        locustfile_sha256=hashlib.sha256(locustfile.read_bytes()).hexdigest(),
    )
    ctx.say(
        f"perf: {target.title} answers; {settings.users} users "
        f"(spawned at {settings.spawn_rate:g}/s) for {format_duration(settings.duration)} "
        f"with {params.locustfile}"
    )
    out = _fresh_dir(job_output_dir(ctx.workspace, ctx.job_id) / KIND)
    locust = ctx.which("locust")
    command = [locust] if locust else ["python", "-m", "locust"]
    tool = await ctx.run_tool([*command, *_locust_args(locustfile, target, settings, out)])
    stats = _read_stats(tool, out / "stats.json")
    if isinstance(stats, str):
        return _fail(ctx, stats if locust else f"{stats} ({NOT_INSTALLED})")
    baseline = read_baseline(ctx.evidence.baseline(KIND), ctx.job_id)
    comparison = compare(
        stats.total,
        settings,
        baseline,
        max_regression=params.max_regression,
        tolerance_ms=params.latency_tolerance * 1000,
    )
    verdict = judge(stats, params.thresholds, comparison, params.max_regression)
    _log(ctx, stats, verdict)
    report = perf_report(
        job=ctx.job_id,
        target=target,
        settings=settings,
        stats=stats,
        thresholds=params.thresholds,
        max_regression=params.max_regression,
        verdict=verdict,
    )
    content = report.model_dump_json(indent=1).encode()
    (out / "perf.json").write_bytes(content)
    ctx.evidence.publish(KIND, content, report_summary(stats, verdict))
    return _verdict_result(ctx, stats, verdict)


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _locust_args(locustfile: Path, target: Target, settings: LoadSettings, out: Path) -> list[str]:
    plugin = out / PLUGIN
    plugin.write_bytes(resources.files("conveyor.verify").joinpath(PLUGIN).read_bytes())
    return [
        *("--locustfile", f"{locustfile},{plugin}"),
        *("--host", target.url),
        "--headless",
        "--only-summary",
        *("--users", str(settings.users)),
        *("--spawn-rate", f"{settings.spawn_rate:g}"),
        *("--run-time", f"{settings.duration:.0f}s"),
        *("--stop-timeout", str(STOP_TIMEOUT)),
        *("--html", str(out / "report.html")),
        *("--conveyor-report", str(out / "stats.json")),
    ]


def _read_stats(tool: ToolRun, path: Path) -> LoadStats | str:
    """Locust's final statistics, or why there are none usable (the step's failure)."""
    if tool.result.exit_code not in LOCUST_OK:
        return f"perf: {tool.failure_detail('locust')}"
    try:
        return parse_stats(path.read_bytes())
    except FileNotFoundError:
        why = "wrote no statistics"
    except (OSError, StatsUnreadable) as error:
        why = f"wrote unreadable statistics ({error})"
    return f"perf: {tool.failure_detail('locust')}; it {why}"


def _log(ctx: StepContext, stats: LoadStats, verdict: PerfVerdict) -> None:
    for line in stats_table(stats):
        ctx.say(f"  {line}")
    for check in verdict.checks:
        ctx.say(f"  {'✓' if check.passed else '✗'} {check.describe()}")
    ctx.say(f"perf: {verdict.comparison.note}")
    for line in change_lines(verdict.comparison):
        ctx.say(line)


def _verdict_result(ctx: StepContext, stats: LoadStats, verdict: PerfVerdict) -> ExecResult:
    total = stats.total
    measured = (
        f"{total.requests} requests, {total.error_rate:.2f}% failed, p95 {total.p95_ms:g} ms, "
        f"p99 {total.p99_ms:g} ms, {total.rps:.1f} req/s"
    )
    if verdict.passed:
        ctx.say(f"perf passed: {measured}")
        return passed(detail=f"perf passed: {measured}")
    return _fail(ctx, f"perf failed ({measured}): {'; '.join(verdict.reasons)}")


def _fail(ctx: StepContext, detail: str) -> ExecResult:
    ctx.say(detail)
    return failed(detail)
