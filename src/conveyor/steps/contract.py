"""The `contract` step: a consumer's Pact tests, and the pacts they write, recorded.

    contract:
      uses: contract
      with:
        command: [python, -m, pytest, -q, -p, no:cacheprovider, tests/contract]

`run` (cached) runs the consumer's Pact tests (pact-python's mock server: the tests
exercise the consumer's own client against it and write a pact file per provider) with
`PACT_DIR` set to where they must write, and keeps the files under
`.conveyor-out/<job>/pacts/`. `finalize` (every run, cache hit or not: the pacts belong to
this run's commit) reads each file, refuses one that does not parse or is not a pact,
publishes it as a "pact" report of the run and records it in the store by consumer,
provider and consumer version (the run's commit): what `contract-verify` and
`can-i-deploy` read. The tests write nothing Conveyor makes up: pact-python builds the
file, the step only checks and files it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import RAW_DIR, StepContext, failed, job_output_dir, passed
from conveyor.errors import ConveyorError
from conveyor.store.contracts import PactRecord, record_pact
from conveyor.store.store import Store

PACT_REPORT = "pact"
PACTS = "pacts"
DEFAULT_COMMAND = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/contract"]
# pact-python's core otherwise reports usage over the network: none here, and none wanted.
PACT_ENV = {"PACT_DO_NOT_TRACK": "true"}


class ContractParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMAND),
        min_length=1,
        description="The consumer's Pact tests; they write their pact files to $PACT_DIR.",
    )


class PactFileError(ConveyorError):
    """A pact file that cannot be read as a pact."""


@dataclass(frozen=True)
class PactFile:
    path: Path
    consumer: str
    provider: str
    interactions: list[str]  # descriptions
    content: bytes


def read_pact(path: Path, content: bytes | None = None) -> PactFile:
    """A pact file, checked for what contracts rely on: consumer, provider, interactions."""
    try:
        raw = path.read_bytes() if content is None else content
        document = json.loads(raw)
    except (OSError, ValueError) as error:
        raise PactFileError(f"{path.name}: not a readable pact file: {error}") from None
    if not isinstance(document, dict):
        raise PactFileError(f"{path.name}: a pact is a JSON object, not {type(document).__name__}")
    consumer, provider = _name(document, "consumer", path), _name(document, "provider", path)
    interactions = document.get("interactions")
    if not isinstance(interactions, list) or not interactions:
        raise PactFileError(f"{path.name}: key `interactions`: a pact needs at least one")
    described = []
    for index, interaction in enumerate(interactions):
        what = interaction.get("description") if isinstance(interaction, dict) else None
        if not isinstance(what, str) or not what:
            raise PactFileError(f"{path.name}: key `interactions[{index}].description` missing")
        described.append(what)
    return PactFile(path, consumer, provider, described, raw)


def _name(document: dict[str, Any], key: str, path: Path) -> str:
    party = document.get(key)
    name = party.get("name") if isinstance(party, dict) else None
    if not isinstance(name, str) or not name:
        raise PactFileError(f"{path.name}: key `{key}.name` missing: whose pact is it?")
    return name


def run_identity(ctx: StepContext, step: str) -> tuple[Path, int, str, str]:
    """The state folder, run id, commit and service name of the run this job is part of."""
    state, run_id = ctx.env.get("CONVEYOR_STATE_DIR"), ctx.env.get("CONVEYOR_RUN_ID")
    if not state or not run_id:
        raise ConveyorError(
            f"{step} records into Conveyor's store, and this job is not part of a run",
            hint="run it with `conveyor run`",
        )
    service = ctx.env.get("CONVEYOR_PIPELINE", "")
    return Path(state), int(run_id), ctx.env.get("CONVEYOR_COMMIT_SHA", ""), service


def open_run_store(state: Path, env: Mapping[str, str]) -> Store:
    return Store(state, env.get("CONVEYOR_DATABASE_URL") or os.environ.get("CONVEYOR_DATABASE_URL"))


class ContractStep:
    name: ClassVar[str] = "contract"
    params_model: ClassVar[type[BaseModel]] = ContractParams
    version: ClassVar[str] = "1"

    def describe(self, params: BaseModel) -> str:
        return f"{self.name} {params.model_dump_json()}"

    def outputs(self, params: BaseModel) -> list[str]:
        return [f"{RAW_DIR}/**/{PACTS}/*.json"]

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        assert isinstance(params, ContractParams)
        started = time.monotonic()
        out = job_output_dir(ctx.workspace, ctx.job_id) / PACTS
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        scoped = replace(ctx, env={**ctx.env, **PACT_ENV, "PACT_DIR": str(out)})
        ctx.say(f"contract: {' '.join(params.command)} (pact files to {out})")
        tool = await scoped.run_tool(params.command)
        took = time.monotonic() - started
        if not tool.result.ok:
            detail = tool.failure_detail("the Pact tests")
            ctx.say(detail)
            return replace(tool.result, detail=detail, duration=took)
        if not any(out.glob("*.json")):
            detail = f"the Pact tests passed but wrote no pact file to $PACT_DIR ({out})"
            ctx.say(detail)
            return failed(detail, took)
        return passed(took)

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        if ran is not None and not ran.ok:
            return ran
        try:
            state, run_id, commit, service = run_identity(ctx, self.name)
            files = [read_pact(path) for path in _pact_paths(ctx)]
        except ConveyorError as error:
            ctx.say(f"contract: {error.message}")
            return failed(f"contract: {error.message}")
        wrong = [f for f in files if service and f.consumer != service]
        if wrong:
            detail = (
                f"contract: {wrong[0].path.name} is {wrong[0].consumer}'s pact, and this "
                f"pipeline is {service}: name the consumer {service!r} in the Pact tests"
            )
            ctx.say(detail)
            return failed(detail)
        with open_run_store(state, ctx.env) as store:
            for pact in files:
                self._record(ctx, store, pact, run_id=run_id, commit=commit)
        return passed(detail=f"{len(files)} pact(s) recorded for {service}@{commit[:12]}")

    def _record(
        self, ctx: StepContext, store: Store, pact: PactFile, *, run_id: int, commit: str
    ) -> None:
        summary = {
            "consumer": pact.consumer,
            "provider": pact.provider,
            "consumer_version": commit,
            "interactions": pact.interactions,
        }
        digest = ctx.evidence.publish(PACT_REPORT, pact.content, summary)
        record_pact(
            store.engine,
            PactRecord(
                consumer=pact.consumer,
                provider=pact.provider,
                consumer_version=commit,
                run_id=run_id,
                job_id=ctx.job_id,
                digest=digest,
                interactions=pact.interactions,
            ),
        )
        listed = "; ".join(pact.interactions)
        ctx.say(f"contract: {pact.consumer} -> {pact.provider}: {listed} ({digest[:19]})")


def _pact_paths(ctx: StepContext) -> list[Path]:
    return sorted((job_output_dir(ctx.workspace, ctx.job_id) / PACTS).glob("*.json"))
