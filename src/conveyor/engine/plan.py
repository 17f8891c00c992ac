"""The planner: spec + git context in, an ordered plan with a reason for every job out.

Pure: no I/O, no store. Matrix jobs expand to one planned job per combination
(`test[python=3.11]`); rules decide what is included, skipped or blocked, and why.

Expressions (`${{ git.branch }}`) are replaced by their text in `env`, `with` and
concurrency groups. In what bash runs (`run:` lines, a `test` step's script) they become
references to environment variables holding the values (`${CONVEYOR_GIT_BRANCH}`), as
GitHub recommends: a branch named `x";touch PWNED;echo"` is then data, never code.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ValidationError

from conveyor.engine.shell import ShellParams
from conveyor.engine.step import Step
from conveyor.errors import ConveyorError
from conveyor.spec.globs import match_any
from conveyor.spec.model import Condition, Job, Pipeline, When
from conveyor.vcs.git import GitContext


class PlanStatus(StrEnum):
    INCLUDED = "included"
    SKIPPED = "skipped"  # its rules did not select this commit, or not asked for
    BLOCKED = "blocked"  # a job it needs will not run
    KEPT = "kept"  # --rerun-failed: succeeded before, its outputs are reused


@dataclass(frozen=True)
class PlannedJob:
    id: str
    name: str
    matrix: dict[str, str]
    job: Job
    step: str
    params: BaseModel
    needs: tuple[str, ...]
    status: PlanStatus
    reason: str
    concurrency_group: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # declared env: pipeline, job, matrix


@dataclass(frozen=True)
class Plan:
    pipeline: str
    jobs: tuple[PlannedJob, ...]  # topological order, ties in file order

    def by_id(self) -> dict[str, PlannedJob]:
        return {job.id: job for job in self.jobs}

    def runnable(self) -> list[PlannedJob]:
        return [job for job in self.jobs if job.status is PlanStatus.INCLUDED]

    def dependants(self, job_ids: set[str]) -> set[str]:
        """The given jobs and everything downstream of them."""
        found = set(job_ids)
        for job in self.jobs:  # topological order: one pass suffices
            if any(need in found for need in job.needs):
                found.add(job.id)
        return found


@dataclass(frozen=True)
class PlanOptions:
    only: Sequence[str] = ()  # job names or ids; their needs are pulled in
    rerun: frozenset[str] | None = None  # --rerun-failed: ids to run again; the rest kept


_EXPRESSION = re.compile(r"\$\{\{\s*([a-zA-Z_][\w.-]*)\s*\}\}")
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9]")
Substitute = Callable[[str], str]


def build_plan(
    pipeline: Pipeline,
    step_params: Mapping[str, BaseModel],
    git: GitContext,
    *,
    name: str,
    steps: Mapping[str, Step],
    options: PlanOptions | None = None,
) -> Plan:
    """`steps` is the host's step table: a `uses:` job's parameters are validated again
    against its step's model once expressions are substituted."""
    options = options or PlanOptions()
    expanded = _expand(pipeline, step_params, git, steps)
    ordered = _topological(expanded)
    selected = _selection(ordered, options.only)
    decided: dict[str, PlannedJob] = {}
    for job in ordered:
        status, reason = _decide(job, git, selected, options.rerun, decided)
        decided[job.id] = _with_status(job, status, reason)
    return Plan(pipeline=name, jobs=tuple(decided[job.id] for job in ordered))


def _with_status(job: PlannedJob, status: PlanStatus, reason: str) -> PlannedJob:
    return PlannedJob(
        id=job.id,
        name=job.name,
        matrix=job.matrix,
        job=job.job,
        step=job.step,
        params=job.params,
        needs=job.needs,
        status=status,
        reason=reason,
        concurrency_group=job.concurrency_group,
        env=job.env,
    )


def _decide(
    job: PlannedJob,
    git: GitContext,
    selected: set[str] | None,
    rerun: frozenset[str] | None,
    decided: Mapping[str, PlannedJob],
) -> tuple[PlanStatus, str]:
    if selected is not None and job.id not in selected:
        return PlanStatus.SKIPPED, "not selected (--job) and not needed by a selected job"
    included, reason = _evaluate_rules(job.job, git)
    if not included:
        return PlanStatus.SKIPPED, reason
    for need in job.needs:
        upstream = decided[need]
        if upstream.status in (PlanStatus.SKIPPED, PlanStatus.BLOCKED):
            return PlanStatus.BLOCKED, f"needs '{need}', which is {upstream.status.value}"
    if rerun is not None and job.id not in rerun:
        return PlanStatus.KEPT, "succeeded in the earlier run; its outputs are reused"
    if rerun is not None:
        return PlanStatus.INCLUDED, "failed earlier, or depends on a job that did"
    return PlanStatus.INCLUDED, reason


def _evaluate_rules(job: Job, git: GitContext) -> tuple[bool, str]:
    if job.if_ is not None:
        holds, why = _condition_holds(job.if_, git)
        return holds, f"if: {why}"
    if job.rules is not None:
        for index, rule in enumerate(job.rules):
            holds, why = _condition_holds(rule, git)
            if holds:
                return rule.when is When.RUN, f"rules[{index}] ({why}) says {rule.when.value}"
        return False, "no rule matched this commit"
    return True, "always runs (no if/rules)"


def _condition_holds(condition: Condition, git: GitContext) -> tuple[bool, str]:
    reasons: list[str] = []
    if condition.branch is not None:
        if git.branch is None or not match_any(git.branch, condition.branch):
            return False, f"branch {git.branch or '(detached)'} not in {condition.branch}"
        reasons.append(f"branch {git.branch} matches")
    if condition.tag is not None:
        if git.tag is None or not match_any(git.tag, condition.tag):
            return False, f"tag {git.tag or '(none)'} not in {condition.tag}"
        reasons.append(f"tag {git.tag} matches")
    if condition.changes is not None:
        if git.changed_files is None:
            reasons.append("changed files unknown, so assumed changed")
        else:
            hits = [p for p in git.changed_files if match_any(p, condition.changes)]
            if not hits:
                return False, f"no changed file matches {condition.changes}"
            more = f" (+{len(hits) - 1} more)" if len(hits) > 1 else ""
            reasons.append(f"{hits[0]}{more} changed")
    return True, ", ".join(reasons) or "empty condition"


def _selection(jobs: Sequence[PlannedJob], only: Sequence[str]) -> set[str] | None:
    if not only:
        return None
    by_name: dict[str, list[str]] = {}
    for job in jobs:
        by_name.setdefault(job.name, []).append(job.id)
        by_name.setdefault(job.id, []).append(job.id)
    unknown = [name for name in only if name not in by_name]
    if unknown:
        raise ConveyorError(
            f"no job named '{unknown[0]}' in this pipeline",
            hint="`conveyor plan` lists the jobs",
        )
    needs = {job.id: job.needs for job in jobs}
    selected: set[str] = set()
    stack = [job_id for name in only for job_id in by_name[name]]
    while stack:
        job_id = stack.pop()
        if job_id not in selected:
            selected.add(job_id)
            stack.extend(needs[job_id])
    return selected


def _expand(
    pipeline: Pipeline,
    step_params: Mapping[str, BaseModel],
    git: GitContext,
    steps: Mapping[str, Step],
) -> list[PlannedJob]:
    ids_by_name: dict[str, list[str]] = {}
    combos: dict[str, list[dict[str, str]]] = {}
    for name, job in pipeline.jobs.items():
        combos[name] = _matrix_combinations(job)
        ids_by_name[name] = [_job_id(name, combo) for combo in combos[name]]
    planned: list[PlannedJob] = []
    for name, job in pipeline.jobs.items():
        needs = tuple(job_id for need in job.needs for job_id in ids_by_name[need])
        for combo in combos[name]:
            planned.append(
                _planned(
                    name,
                    job=job,
                    combo=combo,
                    needs=needs,
                    pipeline=pipeline,
                    step_params=step_params,
                    git=git,
                    steps=steps,
                )
            )
    return planned


def _planned(
    name: str,
    *,
    job: Job,
    combo: dict[str, str],
    needs: tuple[str, ...],
    pipeline: Pipeline,
    step_params: Mapping[str, BaseModel],
    git: GitContext,
    steps: Mapping[str, Step],
) -> PlannedJob:
    job_id = _job_id(name, combo)
    values = _expression_values(combo, git)
    shell_env = _ShellVariables(values, job_id)

    def sub(text: str) -> str:
        return _substitute(text, values, job_id)

    env = {key: sub(value) for key, value in {**pipeline.env, **job.env}.items()}
    env.update({f"MATRIX_{axis.upper()}": value for axis, value in combo.items()})
    params: BaseModel
    if job.run is not None:
        step, params = "shell", ShellParams(commands=[shell_env.sub(line) for line in job.run])
    else:
        assert job.uses is not None
        step = job.uses
        model = steps[step].params_model
        params = _substituted_params(
            step, model, step_params[name], sub=sub, shell_sub=shell_env.sub, job_id=job_id
        )
    # The values join the declared env: the cache key still changes with them.
    env.update(shell_env.used)
    group = sub(job.concurrency.group) if job.concurrency else None
    return PlannedJob(
        id=job_id,
        name=name,
        matrix=combo,
        job=job,
        step=step,
        params=params,
        needs=needs,
        status=PlanStatus.INCLUDED,
        reason="",
        concurrency_group=group,
        env=env,
    )


def _substituted_params(
    step: str,
    model: type[BaseModel],
    params: BaseModel,
    *,
    sub: Substitute,
    shell_sub: Substitute,
    job_id: str,
) -> BaseModel:
    # Only what the file set: re-validating defaults would trip rules about what was given.
    data = params.model_dump(mode="json", by_alias=True, exclude_unset=True)
    scripts = _script_params(step, data)
    data = {
        key: _substitute_tree(value, shell_sub if key in scripts else sub)
        for key, value in data.items()
    }
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConveyorError(
            f"job '{job_id}': `with` is invalid after substitution: {error}"
        ) from None


def _script_params(step: str, data: Mapping[str, Any]) -> set[str]:
    """The `with` keys whose lines bash runs: a `test` step's `command` with `junit:`
    (without it, `command` is pytest's argument list, run without a shell)."""
    if step == "test" and data.get("junit"):
        return {"command"}
    return set()


def _substitute_tree(value: Any, sub: Substitute) -> Any:
    if isinstance(value, str):
        return sub(value)
    if isinstance(value, list):
        return [_substitute_tree(item, sub) for item in value]
    if isinstance(value, dict):
        return {key: _substitute_tree(item, sub) for key, item in value.items()}
    return value


def _expression_values(combo: Mapping[str, str], git: GitContext) -> dict[str, str]:
    values = {f"matrix.{axis}": value for axis, value in combo.items()}
    values.update(
        {
            "git.sha": git.sha,
            "git.short_sha": git.sha[:12],
            "git.branch": git.branch or "",
            "git.tag": git.tag or "",
        }
    )
    return values


def _substitute(text: str, values: Mapping[str, str], job_id: str) -> str:
    if "${{" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            known = ", ".join(sorted(values))
            raise ConveyorError(
                f"job '{job_id}': unknown expression '${{{{ {key} }}}}'",
                hint=f"known expressions: {known}",
            )
        return values[key]

    return _EXPRESSION.sub(replace, text)


class _ShellVariables:
    """Expressions in shell text become `${CONVEYOR_...}`; the values go to the env."""

    def __init__(self, values: Mapping[str, str], job_id: str) -> None:
        self.values = values
        self.job_id = job_id
        self.used: dict[str, str] = {}  # variable -> value
        self._keys: dict[str, str] = {}  # variable -> expression, to catch two in one name

    def sub(self, text: str) -> str:
        if "${{" not in text:
            return text
        return _EXPRESSION.sub(self._reference, text)

    def _reference(self, match: re.Match[str]) -> str:
        key = match.group(1)
        value = _substitute(match.group(0), self.values, self.job_id)  # unknown: the error
        variable = "CONVEYOR_" + _NOT_IN_A_NAME.sub("_", key).upper()
        if self._keys.setdefault(variable, key) != key:
            raise ConveyorError(
                f"job '{self.job_id}': expressions '{self._keys[variable]}' and '{key}' "
                f"would share the variable {variable}",
                hint="rename one of the matrix axes",
            )
        self.used[variable] = value
        return "${" + variable + "}"


def _matrix_combinations(job: Job) -> list[dict[str, str]]:
    if job.matrix is None:
        return [{}]
    axes = {axis: [_text(v) for v in values] for axis, values in job.matrix.axes().items()}
    excluded = [{k: _text(v) for k, v in entry.items()} for entry in job.matrix.exclude]
    combos = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    return [c for c in combos if not any(e.items() <= c.items() for e in excluded)]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _job_id(name: str, combo: Mapping[str, str]) -> str:
    if not combo:
        return name
    return name + "[" + ",".join(f"{axis}={value}" for axis, value in combo.items()) + "]"


def _topological(jobs: list[PlannedJob]) -> list[PlannedJob]:
    """Kahn's algorithm, ties broken by file order (the loader has rejected cycles)."""
    position = {job.id: index for index, job in enumerate(jobs)}
    remaining = {job.id: len(job.needs) for job in jobs}
    dependants: dict[str, list[str]] = {job.id: [] for job in jobs}
    for job in jobs:
        for need in job.needs:
            dependants[need].append(job.id)
    by_id = {job.id: job for job in jobs}
    ready = sorted(
        (jid for jid, count in remaining.items() if count == 0), key=position.__getitem__
    )
    ordered: list[PlannedJob] = []
    while ready:
        job_id = ready.pop(0)
        ordered.append(by_id[job_id])
        for dependant in dependants[job_id]:
            remaining[dependant] -= 1
            if remaining[dependant] == 0:
                ready.append(dependant)
        ready.sort(key=position.__getitem__)
    if len(ordered) != len(jobs):
        raise ConveyorError("the jobs' needs form a cycle", hint="`conveyor lint` names it")
    return ordered
