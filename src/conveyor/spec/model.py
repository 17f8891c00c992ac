"""The typed model of `conveyor.yml` (pydantic v2).

Field aliases are the YAML keys (`with`, `if`); every model forbids unknown keys so a
typo is an error with a suggestion, never silently ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from conveyor.spec.contracts import Contracts
from conveyor.spec.environments import Environment, EnvironmentName
from conveyor.spec.forge import ForgeConfig
from conveyor.spec.gates import Gates
from conveyor.spec.globs import check_glob, check_output_glob
from conveyor.spec.images import ImagesConfig
from conveyor.spec.types import Duration
from conveyor.states import FailureClass

JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

Scalar = str | int | float | bool


def _as_list(value: object) -> object:
    """Accept a single string where a list of strings is expected."""
    return [value] if isinstance(value, str) else value


def _env_value(value: object) -> object:
    """YAML turns `true`/`3` into non-strings; the environment only holds strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


Glob = Annotated[str, BeforeValidator(check_glob)]
# `json_schema_input_type` keeps the JSON Schema as lenient as the shorthands accepted here.
GlobList = Annotated[list[Glob], BeforeValidator(_as_list, json_schema_input_type=str | list[str])]
OutputGlob = Annotated[str, BeforeValidator(check_output_glob)]
OutputGlobList = Annotated[
    list[OutputGlob], BeforeValidator(_as_list, json_schema_input_type=str | list[str])
]
StrList = Annotated[list[str], BeforeValidator(_as_list, json_schema_input_type=str | list[str])]
EnvValue = Annotated[str, BeforeValidator(_env_value, json_schema_input_type=Scalar)]
EnvName = Annotated[str, Field(pattern=ENV_NAME_PATTERN)]
EnvMap = dict[EnvName, EnvValue]
# A Celery queue name, as `conveyor worker --queues` takes it.
QueueName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Condition(StrictModel):
    """A condition on the git context; every key given must hold (AND)."""

    branch: GlobList | None = Field(
        default=None, description="Branch name globs, e.g. [main, 'release/*']."
    )
    tag: GlobList | None = Field(default=None, description="Tag globs, e.g. ['v*'].")
    changes: GlobList | None = Field(
        default=None,
        description="Path globs; holds when a file changed since the last successful run.",
    )


class When(StrEnum):
    RUN = "run"
    NEVER = "never"


class Rule(Condition):
    """One entry of `rules`: the first rule whose condition holds decides."""

    when: When = When.RUN


class RetryPolicy(StrictModel):
    max: int = Field(default=1, ge=0, le=10, description="Extra attempts after the first.")
    on: list[FailureClass] = Field(
        default_factory=lambda: [
            FailureClass.EXIT_CODE,
            FailureClass.TIMEOUT,
            FailureClass.INFRASTRUCTURE,
        ],
        description="Which failure classes are retried.",
    )
    exit_codes: list[int] | None = Field(
        default=None, description="Retry `exit_code` failures only for these exit codes."
    )


def _retry_shorthand(value: object) -> object:
    return {"max": value} if isinstance(value, int) and not isinstance(value, bool) else value


RetryField = Annotated[
    RetryPolicy, BeforeValidator(_retry_shorthand, json_schema_input_type=int | RetryPolicy)
]


class Concurrency(StrictModel):
    group: str = Field(min_length=1, description="Jobs sharing a group run one at a time.")
    supersede: bool = Field(
        default=False,
        description="A newer run replaces an older run still queued on this group.",
    )


def _concurrency_shorthand(value: object) -> object:
    return {"group": value} if isinstance(value, str) else value


ConcurrencyField = Annotated[
    Concurrency,
    BeforeValidator(_concurrency_shorthand, json_schema_input_type=str | Concurrency),
]


class Matrix(StrictModel):
    """Axes of values; the job runs once per combination, minus `exclude`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    exclude: list[dict[str, Scalar]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_axes(self) -> Matrix:
        axes = self.axes()
        if not axes:
            raise ValueError("a matrix needs at least one axis, e.g. {python: ['3.11', '3.12']}")
        for name, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"matrix axis {name!r} must be a non-empty list of values")
            if any(isinstance(v, dict | list) for v in values):
                raise ValueError(f"matrix axis {name!r} must list plain values")
        for entry in self.exclude:
            unknown = set(entry) - set(axes)
            if unknown:
                raise ValueError(f"exclude names unknown axis {sorted(unknown)[0]!r}")
        return self

    def axes(self) -> dict[str, list[Scalar]]:
        return dict(self.model_extra or {})


class Job(StrictModel):
    model_config = ConfigDict(
        # Editors learn the rule that `_run_xor_uses` enforces.
        json_schema_extra={"oneOf": [{"required": ["run"]}, {"required": ["uses"]}]}
    )

    run: StrList | None = Field(
        default=None, description="Shell commands, run in order with bash -e."
    )
    uses: str | None = Field(default=None, description="A built-in step, e.g. `archive`.")
    with_: dict[str, Any] = Field(
        default_factory=dict, alias="with", description="Parameters of the `uses` step."
    )
    needs: StrList = Field(default_factory=list, description="Jobs that must succeed first.")
    env: EnvMap = Field(default_factory=dict)
    secrets: list[EnvName] = Field(
        default_factory=list,
        description="Secret names, read from the environment or .conveyor/secrets.env.",
    )
    if_: Condition | None = Field(default=None, alias="if")
    rules: list[Rule] | None = None
    inputs: GlobList = Field(
        default_factory=lambda: ["**"],
        description="Globs of the files that form the cache key (default: every file).",
    )
    outputs: OutputGlobList = Field(
        default_factory=list,
        description="Globs of artifacts kept and passed to dependants (inside the workspace).",
    )
    tools: StrList = Field(
        default_factory=list,
        description="Commands whose `--version` output joins the cache key, e.g. [python3].",
    )
    cache: bool = True
    timeout: Duration | None = None
    retry: RetryField | None = None
    matrix: Matrix | None = None
    concurrency: ConcurrencyField | None = None
    executor: str = "local"
    queue: QueueName = Field(
        default="default",
        description="The worker queue a `celery` job goes to (`conveyor worker --queues`).",
    )

    @model_validator(mode="after")
    def _run_xor_uses(self) -> Job:
        if (self.run is None) == (self.uses is None):
            raise ValueError("a job needs exactly one of `run` (shell commands) or `uses` (a step)")
        if self.with_ and self.uses is None:
            raise ValueError("`with` gives parameters to a `uses` step; this job has none")
        if self.if_ is not None and self.rules is not None:
            raise ValueError("use either `if` or `rules`, not both")
        return self

    @field_validator("run")
    @classmethod
    def _non_empty_run(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not any(line.strip() for line in value):
            raise ValueError("`run` must contain at least one command")
        return value


class Defaults(StrictModel):
    timeout: Duration = Field(default=3600.0, description="Per job, unless the job sets one.")
    retry: RetryField | None = None
    executor: str | None = Field(
        default=None, description="Every job's executor, unless the job sets one."
    )


class Pipeline(StrictModel):
    version: Literal[1] = Field(description="The spec format version; 1 is the only one.")
    name: str | None = None
    env: EnvMap = Field(default_factory=dict)
    defaults: Defaults = Field(default_factory=Defaults)
    jobs: dict[Annotated[str, Field(pattern=JOB_NAME_PATTERN)], Job] = Field(min_length=1)
    gates: Gates = Field(default_factory=Gates, description="What blocks a change.")
    images: ImagesConfig = Field(
        default_factory=ImagesConfig, description="Image store, signing, scan and admission."
    )
    environments: dict[EnvironmentName, Environment] = Field(
        default_factory=dict, description="Where releases run: runtime, router, smoke tests."
    )
    forge: ForgeConfig | None = Field(
        default=None, description="The forge that sends webhooks and receives statuses."
    )
    contracts: Contracts = Field(
        default_factory=Contracts,
        description="The services this one calls and is called by (Pact contracts).",
    )

    @model_validator(mode="after")
    def _default_executor(self) -> Pipeline:
        """`defaults.executor` for the jobs that do not name one themselves."""
        default = self.defaults.executor
        if default is not None:
            for name, job in self.jobs.items():
                if "executor" not in job.model_fields_set:
                    self.jobs[name] = job.model_copy(update={"executor": default})
        return self
