"""The `contract-verify` step: a provider verifies the pacts its consumers rely on.

    verify-contracts:
      uses: contract-verify
      with:
        command: [python, -m, app]     # starts this commit's provider on $HOST:$PORT
        health: /healthz

Which pacts: for each consumer of `contracts.consumers` in conveyor.yml, the pact of the
consumer version live in each of its environments (from that consumer's own records: its
release ledger, the run that built the digest, the pact that run recorded), and its newest
pact (the one its next release will bring): Pact's "deployed" and "latest" selectors,
answered from Conveyor's records instead of a Pact Broker.

The step starts the provider from the workspace with `command` (`PORT` and `HOST` set; it
must answer `health` within `start_timeout`), replays each pact against it with
pact-python's verifier (`steps/pact_verifier.py`, a process of its own; `request_timeout`
bounds each request), and records each verification (provider version: this run's
commit; consumer version; pact; environment; passed; the failing interactions named) in
the store. It fails when one pact fails, and when anything is missing: no consumer
declared, a consumer with no records, a version no run of it built, a consumer version
with no recorded pact, a provider that never answers. None of those is a pass.

It always runs (never from the cache): what consumers run changes without this commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.deploy.routing import free_ports
from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import FinalizeOnlyStep, StepContext, failed, job_output_dir, passed
from conveyor.errors import ConveyorError
from conveyor.spec.contracts import Contracts
from conveyor.spec.types import Duration
from conveyor.steps.contract import PACT_ENV, PactFileError, open_run_store, read_pact, run_identity
from conveyor.store.contract_versions import deployed_everywhere, open_partner
from conveyor.store.contracts import (
    FailedInteraction,
    PactRecord,
    VerificationRecord,
    latest_pact,
    pacts_of_runs,
    record_verification,
)
from conveyor.store.store import Store

VERIFICATION_REPORT = "contract-verification"
LATEST = "latest"


class ContractVerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(
        min_length=1,
        description="Starts the provider from the workspace; it listens on $HOST:$PORT.",
    )
    health: str = Field(default="/healthz", pattern=r"^/", description="Answers once ready.")
    start_timeout: Duration = Field(default=30.0, description="How long it may take to answer.")
    request_timeout: Duration = Field(default=5.0, description="Each replayed request's limit.")


@dataclass(frozen=True)
class Selected:
    """One pact to verify: whose, which version, where it runs."""

    pact: PactRecord
    content: bytes
    environments: tuple[str, ...]

    @property
    def title(self) -> str:
        where = ", ".join(self.environments)
        return f"{self.pact.consumer}@{self.pact.consumer_version[:12]} ({where})"


@dataclass(frozen=True)
class Outcome:
    selected: Selected
    passed: bool
    failures: list[FailedInteraction]


class ContractVerifyStep(FinalizeOnlyStep):
    name: ClassVar[str] = "contract-verify"
    params_model: ClassVar[type[BaseModel]] = ContractVerifyParams
    version: ClassVar[str] = "1"
    why_in_finalize: ClassVar[str] = "the consumers' deployed versions change without this commit"

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, ContractVerifyParams)
        started = time.monotonic()
        try:
            state, run_id, commit, service = run_identity(ctx, self.name)
            selected, missing = select_pacts(_contracts(ctx), _spec_dir(ctx), service)
        except ConveyorError as error:
            return _fail(ctx, f"contract-verify: {error.message}", started)
        for problem in missing:
            ctx.say(f"  ✗ {problem}")
        outcomes = await _verify_all(params, ctx, service, selected)
        with open_run_store(state, ctx.env) as store:
            for outcome in outcomes:
                _record(store, outcome, service=service, commit=commit, run_id=run_id, ctx=ctx)
        _publish(ctx, outcomes, missing)
        return _verdict(ctx, outcomes, missing, service, started)


def _contracts(ctx: StepContext) -> Contracts:
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    contracts = load_pipeline(Path(ctx.env["CONVEYOR_SPEC"]), steps=STEP_PARAMS).pipeline.contracts
    if not contracts.consumers:
        raise ConveyorError(
            "conveyor.yml declares no consumers under `contracts.consumers`: there is no pact "
            "to verify (nothing verified is not a pass)"
        )
    return contracts


def _spec_dir(ctx: StepContext) -> Path:
    return Path(ctx.env["CONVEYOR_SPEC"]).parent


def select_pacts(
    contracts: Contracts, spec_dir: Path, provider: str
) -> tuple[list[Selected], list[str]]:
    """The pacts to verify, and what is missing (each a refusal, named)."""
    chosen: dict[str, Selected] = {}
    missing: list[str] = []
    for consumer, partner in contracts.consumers.items():
        with open_partner(spec_dir, consumer, partner) as store:
            for found, where in _wanted(store, consumer, provider, missing):
                content = store.blobs.get_bytes(found.digest)
                known = chosen.get(found.digest)
                envs = (*known.environments, where) if known else (where,)
                chosen[found.digest] = Selected(found, content, envs)
    return list(chosen.values()), missing


def _wanted(
    store: Store, consumer: str, provider: str, missing: list[str]
) -> list[tuple[PactRecord, str]]:
    wanted: list[tuple[PactRecord, str]] = []
    for live in deployed_everywhere(store, consumer):
        if not live.version.run_ids:
            missing.append(
                f"{live.environment} runs {consumer} {live.digest[:19]}, which no run of "
                f"{consumer} built: an unknown version, its pact unknown"
            )
            continue
        pacts = pacts_of_runs(
            store.engine, live.version.run_ids, consumer=consumer, provider=provider
        )
        if not pacts:
            missing.append(
                f"{consumer}@{live.version.commits[-1][:12] if live.version.commits else '?'} "
                f"in {live.environment} recorded no pact with {provider}"
            )
            continue
        wanted.append((pacts[0], live.environment))
    newest = latest_pact(store.engine, consumer=consumer, provider=provider)
    if newest is not None:
        wanted.append((newest, LATEST))
    elif not wanted:
        missing.append(f"{consumer} has recorded no pact with {provider}")
    return wanted


async def _verify_all(
    params: ContractVerifyParams, ctx: StepContext, provider: str, selected: list[Selected]
) -> list[Outcome]:
    if not selected:
        return []
    out = job_output_dir(ctx.workspace, ctx.job_id)
    out.mkdir(parents=True, exist_ok=True)
    async with _provider(params, ctx, out) as url:
        if url is None:
            why = f"{provider} never answered {params.health} within {params.start_timeout:g}s"
            return [_not_run(item, why) for item in selected]
        return [
            await _verify(params, ctx=ctx, provider=provider, url=url, item=item, out=out)
            for item in selected
        ]


def _not_run(item: Selected, why: str) -> Outcome:
    failures = [FailedInteraction(name, why) for name in item.pact.interactions]
    return Outcome(item, False, failures)


@contextlib.asynccontextmanager
async def _provider(
    params: ContractVerifyParams, ctx: StepContext, out: Path
) -> AsyncIterator[str | None]:
    """The provider, started from the workspace; yields its URL, or None if it never
    answered. A server outlives a command, so it is started here rather than through the
    executor (which runs commands to completion), and its whole group is ended after."""
    port = free_ports(1)[0]
    env = {**ctx.env, "HOST": "127.0.0.1", "PORT": str(port)}
    ctx.say(f"contract-verify: starting {' '.join(params.command)} on port {port}")
    with (out / "provider.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *params.command,
            cwd=ctx.workspace,
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            ready = await _answers(url + params.health, params.start_timeout, process)
            yield url if ready else None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


async def _answers(url: str, timeout: float, process: asyncio.subprocess.Process) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.returncode is None:
        if await asyncio.to_thread(_get, url):
            return True
        await asyncio.sleep(0.1)
    return False


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 (our own URL)
            return bool(answer.status < 500)
    except (urllib.error.URLError, OSError, ValueError):
        return False


async def _verify(
    params: ContractVerifyParams,
    *,
    ctx: StepContext,
    provider: str,
    url: str,
    item: Selected,
    out: Path,
) -> Outcome:
    stem = f"{item.pact.consumer}-{item.pact.digest.removeprefix('sha256:')[:12]}"
    pact_path, results_path = out / f"{stem}.json", out / f"{stem}.results.json"
    pact_path.write_bytes(item.content)
    results_path.unlink(missing_ok=True)
    ctx.say(f"contract-verify: {provider} against the pact of {item.title}")
    try:
        read_pact(pact_path)
    except PactFileError as error:
        return _not_run(item, f"the recorded pact does not parse: {error.message}")
    argv = [sys.executable, "-m", "conveyor.steps.pact_verifier", provider, url, str(pact_path)]
    argv += [str(int(params.request_timeout * 1000)), str(results_path)]
    scoped = {**ctx.env, **PACT_ENV}
    tool = await _run(ctx, argv, scoped)
    try:
        results: dict[str, Any] = json.loads(results_path.read_text())
    except (OSError, ValueError):
        return _not_run(item, tool)
    return Outcome(item, results.get("result") is True, failed_interactions(results))


async def _run(ctx: StepContext, argv: list[str], env: dict[str, str]) -> str:
    run = await replace(ctx, env=env).run_tool(argv)
    return run.failure_detail("the Pact verifier")


def failed_interactions(results: dict[str, Any]) -> list[FailedInteraction]:
    """The interactions the verifier failed, named by their description, with the first
    mismatches it found (the core's own words)."""
    failures = []
    for entry in results.get("interactionResults") or []:
        if not isinstance(entry, dict) or entry.get("result") == "OK":
            continue
        failures.append(FailedInteraction(str(entry.get("description", "?")), _mismatch(entry)))
    return failures


def _mismatch(entry: dict[str, Any]) -> str:
    found = entry.get("mismatch") or {}
    if found.get("message"):
        return str(found["message"])
    said = [
        str(m.get("mismatch", "")) for m in found.get("mismatches") or [] if isinstance(m, dict)
    ]
    return "; ".join(s for s in said if s)[:500] or "failed"


def _record(
    store: Store, outcome: Outcome, *, service: str, commit: str, run_id: int, ctx: StepContext
) -> None:
    for environment in outcome.selected.environments:
        record_verification(
            store.engine,
            VerificationRecord(
                provider=service,
                provider_version=commit,
                run_id=run_id,
                job_id=ctx.job_id,
                consumer=outcome.selected.pact.consumer,
                consumer_version=outcome.selected.pact.consumer_version,
                pact_digest=outcome.selected.pact.digest,
                environment=environment,
                passed=outcome.passed,
                failures=outcome.failures,
            ),
        )


def _publish(ctx: StepContext, outcomes: list[Outcome], missing: list[str]) -> None:
    document = {
        "job": ctx.job_id,
        "verifications": [
            {
                "consumer": o.selected.pact.consumer,
                "consumer_version": o.selected.pact.consumer_version,
                "pact": o.selected.pact.digest,
                "environments": list(o.selected.environments),
                "passed": o.passed,
                "failures": [f.to_json() for f in o.failures],
            }
            for o in outcomes
        ],
        "missing": missing,
    }
    passed_all = bool(outcomes) and not missing and all(o.passed for o in outcomes)
    summary = {"verified": len(outcomes), "missing": len(missing), "passed": passed_all}
    ctx.evidence.publish(VERIFICATION_REPORT, json.dumps(document).encode(), summary)


def _verdict(
    ctx: StepContext, outcomes: list[Outcome], missing: list[str], service: str, started: float
) -> ExecResult:
    reasons = list(missing)
    for outcome in outcomes:
        mark = "✓" if outcome.passed else "✗"
        ctx.say(f"  {mark} the pact of {outcome.selected.title}")
        for failure in outcome.failures:
            line = f"{outcome.selected.pact.consumer}: {failure.interaction!r}: {failure.mismatch}"
            ctx.say(f"      ✗ {line}")
            reasons.append(line)
    took = time.monotonic() - started
    if not outcomes and not missing:
        return _fail(ctx, f"contract-verify: no pact to verify for {service}", started)
    if reasons:
        return _fail(ctx, f"contract-verify: {service} breaks a contract: {reasons[0]}", started)
    summary = f"contract-verify: {service} verified {len(outcomes)} pact(s)"
    ctx.say(summary)
    return passed(took, summary)


def _fail(ctx: StepContext, detail: str, started: float) -> ExecResult:
    ctx.say(detail)
    return failed(detail, time.monotonic() - started)
