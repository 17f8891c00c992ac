"""Load `conveyor.yml`: parse once, validate the model, the job graph and step parameters.

Every problem becomes a `SpecError` at file:line:col with a dotted key path. A YAML
syntax error stops there; otherwise the model's problems and the semantic ones (needs,
environments, step parameters, read from the data as written) are all reported at once,
in file order, as one `SpecErrors` when there are several.

The spec knows no step: the host passes its step table (`StepCatalog`: a `uses:` name to
the model of that step's `with:`), against which `uses:` and `with:` are checked.
"""

from __future__ import annotations

import difflib
import graphlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from conveyor.errors import ConveyorError, SpecError, SpecErrors
from conveyor.safe_yaml import excerpt as _quote  # values from the file, cut when long
from conveyor.spec.environments import ENVIRONMENT_NAME_PATTERN, scoped_secret_variable
from conveyor.spec.locate import KeyPath, Locator, Position, format_key_path, parse_yaml
from conveyor.spec.model import ENV_NAME_PATTERN, JOB_NAME_PATTERN, Pipeline

SPEC_FILE_NAME = "conveyor.yml"
_EXPECTED_BY_ERROR_TYPE = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
_NAME_RULES = {
    JOB_NAME_PATTERN: (
        "job name",
        "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    ),
    ENVIRONMENT_NAME_PATTERN: (
        "environment name",
        "use lower-case letters, digits and '-', starting with a letter (at most 32)",
    ),
    ENV_NAME_PATTERN: ("variable name", "use letters, digits and '_', not starting with a digit"),
}

# The executor backends (engine/executors/__init__.py); kept here to keep lint light.
EXECUTOR_NAMES = ("local", "celery")
ModelT = TypeVar("ModelT", bound=BaseModel)
# A step name (`uses:`) to the model of its `with:`: the host's step table.
StepCatalog = Mapping[str, type[BaseModel]]


@dataclass(frozen=True)
class LoadedPipeline:
    pipeline: Pipeline
    path: Path
    locator: Locator
    # The validated `with:` of each `uses` job, an instance of its step's params_model.
    step_params: dict[str, BaseModel]


def load_pipeline(path: Path, *, steps: StepCatalog) -> LoadedPipeline:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConveyorError(
            f"no {SPEC_FILE_NAME} at {path}", hint="run `conveyor init` to write a starter file"
        ) from None
    except UnicodeDecodeError as error:
        raise SpecError(
            f"the file is not UTF-8 text (byte {error.start} cannot be decoded)", file=str(path)
        ) from None
    except OSError as error:
        raise ConveyorError(f"cannot read {path}: {error.strerror}") from None
    return parse_pipeline(text, str(path), steps=steps)


def parse_pipeline(text: str, file: str, *, steps: StepCatalog) -> LoadedPipeline:
    document = parse_yaml(text, file, key_nouns={("jobs",): "job name"})
    problems: list[_Problem] = []
    pipeline: Pipeline | None = None
    try:
        pipeline = Pipeline.model_validate(document.data)
    except ValidationError as error:
        problems += _pydantic_problems(error, Pipeline, (), document.data)
    # The semantic checks read the data as written, so they run even when the model
    # did not validate: a typo'd key and a needs cycle are reported together.
    jobs = _raw_jobs(document.data)
    step_params, step_problems = _validate_steps(jobs, steps)
    problems += [*_graph_problems(jobs), *_environment_problems(document.data, jobs)]
    problems += _scoped_secret_problems(document.data)
    problems += _default_executor_problems(document.data)
    problems += step_problems
    if problems:
        raise _spec_error(problems, file, document.locator)
    assert pipeline is not None
    return LoadedPipeline(pipeline, Path(file), document.locator, step_params)


def parse_model(model: type[ModelT], text: str, file: str) -> tuple[ModelT, Locator]:
    """Any YAML file validated against a pydantic model, with the same located errors."""
    document = parse_yaml(text, file)
    try:
        return model.model_validate(document.data), document.locator
    except ValidationError as error:
        problems = _pydantic_problems(error, model, (), document.data)
        raise _spec_error(problems, file, document.locator) from None


@dataclass(frozen=True)
class _Problem:
    message: str
    path: KeyPath  # the key path shown to the user
    hint: str | None = None
    at_key: bool = False  # point at the key (`runn:`) rather than at its value
    at: KeyPath | None = None  # where to point, when not at `path` itself
    rank: int = 1  # 0 before all others (version), 2 after them (missing keys)


def _spec_error(problems: Sequence[_Problem], file: str, locator: Locator) -> SpecError:
    """Every problem in file order (missing keys last); a wrong version alone."""

    def position(problem: _Problem) -> Position:
        where = problem.at or problem.path
        found = locator.locate_key(where) if problem.at_key else locator.locate(where)
        return found or (1, 1)

    # A wrong version explains every other error: the file is some other format.
    shown = [p for p in problems if p.rank == 0] or list(problems)
    errors: dict[tuple[Position, str], SpecError] = {}
    for problem in sorted(shown, key=lambda p: (p.rank, position(p))):
        line, column = position(problem)
        errors.setdefault(
            ((line, column), problem.message),
            SpecError(
                problem.message,
                file=file,
                line=line,
                column=column,
                key_path=format_key_path(problem.path) or None,
                hint=problem.hint,
            ),
        )
    found = list(errors.values())
    return found[0] if len(found) == 1 else SpecErrors(found)


def _suggest(name: str, choices: Iterable[str], what: str) -> str:
    options = sorted(choices)
    close = difflib.get_close_matches(name, options, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{what}: {', '.join(options)}" if options else f"there are no {what}"


# --- pydantic errors -> problems -------------------------------------------------


def _pydantic_problems(
    error: ValidationError, root: type[BaseModel], base: KeyPath, data: object
) -> list[_Problem]:
    """One problem per place: the errors of a union's members merge into one."""
    by_loc: dict[KeyPath, list[ErrorDetails]] = {}
    for detail in error.errors():
        by_loc.setdefault(_trim_to_data(data, tuple(detail["loc"])), []).append(detail)
    return [_from_pydantic(loc, details, root, base) for loc, details in by_loc.items()]


def _trim_to_data(data: object, loc: KeyPath) -> KeyPath:
    """Drop what pydantic adds past the data: union member names, shorthand indexes."""
    current = data
    for index, part in enumerate(loc):
        if part == "[key]":
            return loc  # about the key just reached, not its value
        if isinstance(current, dict):
            if part not in current:
                return loc  # a missing key: keep the path to it
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            current = current[part]
        else:
            return loc[:index]
    return loc


def _from_pydantic(
    loc: KeyPath, details: list[ErrorDetails], root: type[BaseModel], base: KeyPath
) -> _Problem:
    detail = details[0]
    kind, value = detail["type"], detail["input"]
    if loc and loc[-1] == "[key]":
        return _bad_key(detail, (*base, *loc[:-1]))
    path = (*base, *loc)
    if kind == "extra_forbidden":
        valid = _valid_keys(root, loc[:-1])
        return _Problem(
            f"unknown key {_quote(loc[-1])}",
            path,
            _suggest(str(loc[-1]), valid, "valid keys"),
            True,
        )
    if kind == "missing":
        # Ranked last: a missing key is often the misspelled one reported as unknown.
        hint = "start the file with `version: 1`" if path == ("version",) else None
        return _Problem(f"missing required key {loc[-1]!r}", path, hint, rank=2)
    special = _special_case(path, kind, value)
    if special is not None:
        return special
    # A model-level rule (e.g. run xor uses) is about the whole mapping: point at its key.
    about_mapping = kind in ("value_error", "assertion_error") and isinstance(value, dict)
    return _Problem(_human_message(details), path, at_key=about_mapping)


def _special_case(path: KeyPath, kind: str, value: object) -> _Problem | None:
    """Errors whose pydantic wording would not tell a user what to do."""
    if path == ("version",):
        return _Problem(
            f"unsupported spec version {_quote(value)}: this Conveyor reads version 1",
            path,
            hint="write `version: 1`",
            rank=0,  # a wrong version explains every other error
        )
    if path == ("jobs",) and (kind == "too_short" or value is None):
        return _Problem(
            "no jobs defined",
            path,
            hint="add a job, e.g. `jobs: {test: {run: pytest}}`",
            at_key=True,
        )
    if len(path) == 2 and path[0] == "jobs" and value is None:
        return _Problem(
            f"job {_quote(path[1])} is empty",
            path,
            hint="give it `run:` commands or `uses:` a step",
            at_key=True,
        )
    return None


def _bad_key(detail: ErrorDetails, path: KeyPath) -> _Problem:
    name = path[-1]
    rule = _NAME_RULES.get(str((detail.get("ctx") or {}).get("pattern")))
    if rule is not None:
        noun, advice = rule
        return _Problem(f"invalid {noun} {_quote(name)}: {advice}", path, at_key=True)
    return _Problem(f"invalid key {_quote(name)}: {_human_message([detail])}", path, at_key=True)


def _human_message(details: list[ErrorDetails]) -> str:
    detail = details[0]
    kind, value = detail["type"], detail["input"]
    ctx = detail.get("ctx") or {}
    expected = [_EXPECTED_BY_ERROR_TYPE.get(d["type"]) for d in details]
    if None not in expected:
        nouns = list(dict.fromkeys(str(noun) for noun in expected))
        either = ", ".join(nouns[:-1]) + " or " + nouns[-1] if len(nouns) > 1 else nouns[0]
        return f"expected {either}, got {_describe(value)}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _NAME_RULES:
        noun, advice = _NAME_RULES[ctx["pattern"]]
        return f"invalid {noun} {_quote(value)}: {advice}"
    if kind == "string_too_short":
        return "must not be empty"
    message = detail["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if message.startswith("Input should be "):
        return f"must be {message.removeprefix('Input should be ')}, got {_describe(value)}"
    return message


def _describe(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    text = str(value)
    return f"the string {text if len(text) <= 40 else text[:37] + '...'!r}"


def _valid_keys(root: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The YAML keys allowed at `loc`, found by walking the model classes along it."""
    annotation: Any = root
    for part in loc:
        annotation = _child_annotation(_unwrap(annotation), part)
    model = _unwrap(annotation)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return [field.alias or name for name, field in model.model_fields.items()]


def _child_annotation(annotation: Any, part: str | int) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if (field.alias or name) == part:
                return field.annotation
        return None
    origin = get_origin(annotation)
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list:
        return get_args(annotation)[0]
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip `Annotated` and `| None`; of a union, keep the member that has keys."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, UnionType):
        members = [_unwrap(arg) for arg in get_args(annotation) if arg is not NoneType]
        structured = [m for m in members if get_origin(m) in (dict, list) or _is_model(m)]
        return (structured or members)[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# --- graph and step checks, on the data as written ------------------------------


@dataclass(frozen=True)
class _RawJob:
    """What the semantic checks need of a job, read leniently (the model checks types)."""

    data: dict[str, Any]
    needs: list[tuple[int, str]]  # (index in `needs`, name), strings only

    @property
    def uses(self) -> str | None:
        uses = self.data.get("uses")
        return uses if isinstance(uses, str) else None

    @property
    def with_(self) -> tuple[bool, Any]:
        """Whether `with` is written, and its value."""
        for key in ("with", "with_"):
            if key in self.data:
                return True, self.data[key]
        return False, {}


def _raw_jobs(data: dict[str, Any]) -> dict[str, _RawJob]:
    jobs = data.get("jobs")
    if not isinstance(jobs, dict):
        return {}
    found: dict[str, _RawJob] = {}
    for name, job in jobs.items():
        if isinstance(job, dict):
            needs = job.get("needs", [])
            listed = [needs] if isinstance(needs, str) else needs
            pairs = list(enumerate(listed)) if isinstance(listed, list) else []
            found[name] = _RawJob(job, [(i, n) for i, n in pairs if isinstance(n, str)])
    return found


def _graph_problems(jobs: dict[str, _RawJob]) -> list[_Problem]:
    problems: list[_Problem] = []
    graph: dict[str, list[str]] = {}
    for name, job in jobs.items():
        graph[name] = []
        for index, need in job.needs:
            path = ("jobs", name, "needs", index)
            if need == name:
                problems.append(
                    _Problem(
                        f"job {_quote(name)} needs itself", path, "remove it from its own needs"
                    )
                )
            elif need not in jobs:
                hint = _suggest(need, jobs, "jobs")
                problems.append(_Problem(f"unknown job {_quote(need)} in needs", path, hint))
            else:
                graph[name].append(need)
    cycle = _find_cycle(graph, list(jobs))
    if cycle is not None:
        problems.append(_cycle_problem(jobs, cycle))
    return problems


def _environment_problems(data: dict[str, Any], jobs: dict[str, _RawJob]) -> list[_Problem]:
    """`after` names another environment, and promotion order has no loop."""
    problems: list[_Problem] = []
    written = data.get("environments")
    environments = written if isinstance(written, dict) else {}
    names = list(environments)
    graph: dict[str, list[str]] = {}
    for name, environment in environments.items():
        after = environment.get("after") if isinstance(environment, dict) else None
        path = ("environments", name, "after")
        graph[name] = []
        if not isinstance(after, str):
            continue
        if after == name:
            problems.append(_Problem(f"environment {_quote(name)} comes after itself", path))
        elif after not in environments:
            hint = _suggest(after, names, "environments")
            problems.append(_Problem(f"unknown environment {_quote(after)} in after", path, hint))
        else:
            graph[name].append(after)
    for job_name, job in jobs.items():
        _, with_ = job.with_
        wanted = (
            with_.get("environment") if job.uses == "deploy" and isinstance(with_, dict) else None
        )
        if isinstance(wanted, str) and wanted not in environments:
            hint = _suggest(wanted, names, "environments")
            at = ("jobs", job_name, "with", "environment")
            problems.append(_Problem(f"unknown environment {_quote(wanted)}", at, hint))
    cycle = _find_cycle(graph, names)
    if cycle is not None:
        loop = " -> ".join([*cycle, cycle[0]])
        at_after = ("environments", cycle[0], "after")
        problems.append(_Problem(f"promotion order loops: {loop}", at_after))
    return problems


def _scoped_secret_problems(data: dict[str, Any]) -> list[_Problem]:
    """Two environments' secrets must not share a scoped variable (`prod` + `EU_DB` and
    `prod-eu` + `DB` are both CONVEYOR_SECRET_PROD_EU_DB)."""
    written = data.get("environments")
    owners: dict[str, tuple[str, str]] = {}
    problems: list[_Problem] = []
    for environment, body in (written if isinstance(written, dict) else {}).items():
        secrets = body.get("secrets") if isinstance(body, dict) else None
        for index, name in enumerate(secrets if isinstance(secrets, list) else []):
            if not isinstance(environment, str) or not isinstance(name, str):
                continue
            variable = scoped_secret_variable(environment, name)
            other = owners.setdefault(variable, (environment, name))
            if other[0] != environment:
                problems.append(
                    _Problem(
                        f"secret {_quote(name)} of {_quote(environment)} and secret "
                        f"{_quote(other[1])} of {_quote(other[0])} are both read from "
                        f"{variable}",
                        ("environments", environment, "secrets", index),
                        hint="rename one of the secrets or environments",
                    )
                )
    return problems


def _find_cycle(graph: dict[str, list[str]], order: list[str]) -> list[str] | None:
    """A cycle as [a, b, c] where a needs b, b needs c and c needs a; None if acyclic."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        # graphlib lists each job before the one that needs it; reverse to read as needs.
        cycle = list(reversed(error.args[1]))[:-1]
        start = min(range(len(cycle)), key=lambda i: order.index(cycle[i]))
        return cycle[start:] + cycle[:start]
    return None


def _cycle_problem(jobs: dict[str, _RawJob], cycle: list[str]) -> _Problem:
    first, last = cycle[0], cycle[-1]
    index = next(i for i, need in jobs[last].needs if need == first)
    chain = " -> ".join([*cycle, first])
    return _Problem(
        f"jobs need each other in a cycle: {chain}",
        ("jobs", last, "needs", index),
        hint="each arrow is a `needs` entry; remove one of them",
    )


def _default_executor_problems(data: object) -> list[_Problem]:
    defaults = data.get("defaults") if isinstance(data, dict) else None
    executor = defaults.get("executor") if isinstance(defaults, dict) else None
    if not isinstance(executor, str) or executor in EXECUTOR_NAMES:
        return []
    hint = _suggest(executor, EXECUTOR_NAMES, "executors")
    return [_Problem(f"unknown executor {_quote(executor)}", ("defaults", "executor"), hint)]


def _validate_steps(
    jobs: dict[str, _RawJob], steps: StepCatalog
) -> tuple[dict[str, BaseModel], list[_Problem]]:
    params: dict[str, BaseModel] = {}
    problems: list[_Problem] = []
    for name, job in jobs.items():
        executor = job.data.get("executor", "local")
        if isinstance(executor, str) and executor not in EXECUTOR_NAMES:
            hint = _suggest(executor, EXECUTOR_NAMES, "executors")
            problems.append(
                _Problem(f"unknown executor {_quote(executor)}", ("jobs", name, "executor"), hint)
            )
        if job.uses is None:
            continue
        model = steps.get(job.uses)
        if model is None:
            hint = _suggest(job.uses, sorted(steps), "steps")
            problems.append(
                _Problem(f"unknown step {_quote(job.uses)}", ("jobs", name, "uses"), hint)
            )
            continue
        written, with_ = job.with_
        if not isinstance(with_, dict):
            continue  # the model reports a `with` that is not a mapping
        try:
            params[name] = model.model_validate(with_)
        except ValidationError as error:
            base = ("jobs", name, "with")
            found = _pydantic_problems(error, model, base, with_)
            # Without a `with:` mapping in the file, point at the `uses:` that needs one.
            if not written:
                found = [replace(p, at_key=False, at=("jobs", name, "uses")) for p in found]
            problems.extend(found)
    return params, problems
