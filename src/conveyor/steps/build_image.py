"""The `build-image` step: an OCI image of the workspace, stored and tagged by commit.

`run` (cached) builds: in `python` mode the reproducible builder (project files, plus the
dependencies of the requirements file or else of pyproject.toml, on an optional base from
the image store); in
`containerfile` mode the project's Containerfile with podman or buildah. The image goes
into the image store, the OCI layout named by CONVEYOR_IMAGE_STORE (the engine sets it to
`<state dir>/images`), tagged with the commit sha (and `version`), and is described in
`.conveyor-out/<job>/image.json` for the jobs that need it.

`finalize` (never cached) checks the image is still in the store, tags it with this
commit when `run` was a cache hit for another commit with the same inputs, and publishes
image.json as evidence of kind "image".

pip and podman run through the job's executor (from the builder's thread, on the loop).
The dependency layer is also cached by what decides it (the requirements, the
interpreter, the index settings of a file that is not a lock), in
`<image store>/.conveyor-cache/deps`, so a warm build runs no pip even when this step's
own cache misses (a project file changed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import RAW_DIR, SimpleStep, StepContext, failed, job_output_dir, passed
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.spec.globs import check_glob
from conveyor.store.reports import IMAGE_REPORT
from conveyor.supply.oci.build import (
    AppFiles,
    BaseImage,
    BuiltImage,
    CommandRunner,
    Dependencies,
    DependencyCache,
    ImageSpec,
    build_image,
    host_architecture,
)
from conveyor.supply.oci.containerfile import (
    build_containerfile,
    find_build_tool,
    find_containerfile,
)
from conveyor.supply.oci.debian_base import cache_root_of, ensure_python_base
from conveyor.supply.oci.dependencies import INDEX_SETTINGS, DependencyReport
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.pyproject import pyproject_requirements
from conveyor.supply.oci.store import check_repository, check_tag_syntax

T = TypeVar("T")
STORE_ENV = "CONVEYOR_IMAGE_STORE"
DEPS_CACHE_DIR = ".conveyor-cache/deps"
PYPROJECT = "pyproject.toml"
DEFAULT_REQUIREMENTS = "requirements.txt"


class DependencySource(StrEnum):
    """Where the image's Python dependencies come from (`auto`: the requirements file if
    one is named, else pyproject.toml's [project] dependencies, else none)."""

    AUTO = "auto"
    REQUIREMENTS = "requirements"
    PYPROJECT = "pyproject"
    NONE = "none"


SCRATCH = "scratch"  # `base: scratch`: an image of the project's files alone


class BuildMode(StrEnum):
    PYTHON = "python"
    CONTAINERFILE = "containerfile"


class BuildImageParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str = Field(description="The image's repository in the store, e.g. shop.")
    mode: BuildMode = BuildMode.PYTHON
    base: str | None = Field(
        default=None,
        description="repo:tag or repo@sha256:... in the store; `scratch` for none. "
        "Default (python mode): Conveyor's Python base image.",
    )
    requirements: str | None = Field(default=None, description="A requirements file to install.")
    packages: list[str] = Field(
        default_factory=list,
        description="More requirement specifiers installed with the dependencies, e.g. the "
        "production server (gunicorn, uvicorn) the app does not depend on itself.",
    )
    dependencies: DependencySource = Field(
        default=DependencySource.AUTO,
        description="auto: requirements if named, else pyproject.toml's; or one of them; none.",
    )
    extras: list[str] = Field(
        default_factory=list, description="pyproject.toml optional-dependencies to add."
    )
    app: list[str] = Field(default_factory=lambda: ["**"], description="Project files to copy.")
    exclude: list[str] = Field(default_factory=list, description="Globs left out of the image.")
    workdir: str = "/app"
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    version: str | None = Field(default=None, description="An extra tag, e.g. 1.4.0.")
    source: str | None = Field(default=None, description="The source repository's URL.")
    containerfile: str | None = Field(
        default=None, description="containerfile mode: the file (default Containerfile)."
    )

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        return _as_value_error(check_repository, value)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        return None if value is None else _as_value_error(check_tag_syntax, value)

    @field_validator("base")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is not None and value != SCRATCH:
            _as_value_error(BaseImage.parse, value)
        return value

    @field_validator("app", "exclude")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return [check_glob(p) for p in value]

    @field_validator("requirements", "containerfile")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a path inside the workspace")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> BuildImageParams:
        source = self.dependencies
        pyproject_or_none = (DependencySource.PYPROJECT, DependencySource.NONE)
        if self.requirements is not None and source in pyproject_or_none:
            raise ValueError(f"requirements: names a file, and dependencies: is {source}")
        not_pyproject = (DependencySource.REQUIREMENTS, DependencySource.NONE)
        if self.extras and (self.requirements is not None or source in not_pyproject):
            raise ValueError("extras: are pyproject.toml's; they need no requirements: file")
        return self

    @field_validator("workdir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or ".." in value.split("/"):
            raise ValueError("workdir must be an absolute path such as /app")
        return value


def _as_value_error(check: Callable[[str], T], value: str) -> T:
    """pydantic reports ValueError as a located spec error; ours raise ConveyorError."""
    try:
        return check(value)
    except ConveyorError as error:
        raise ValueError(error.message) from None


class BuildImageStep(SimpleStep):
    name: ClassVar[str] = "build-image"
    params_model: ClassVar[type[BaseModel]] = BuildImageParams
    version: ClassVar[str] = "2"  # 2: the whole dependency closure, never --no-deps

    def describe(self, params: BaseModel) -> str:
        return f"build-image {params.model_dump_json()}"

    def outputs(self, params: BaseModel) -> list[str]:
        # outputs() is not told the job id; each job writes only its own folder.
        return [f"{RAW_DIR}/*/image.json"]

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        assert isinstance(params, BuildImageParams)
        started = time.monotonic()
        store = LayoutStore(image_store_dir(ctx))
        tags = commit_tags(ctx, params.version)
        runner = ExecutorRunner(ctx, asyncio.get_running_loop())
        try:
            built = await asyncio.to_thread(self._build, params, ctx, store, tags, runner)
        except asyncio.CancelledError:
            runner.cancel()
            raise
        write_record(ctx, built.to_json())
        say_dependencies(ctx, built.dependencies)
        ctx.say(f"build-image: {built.repository}@{built.manifest_digest} tags {list(tags)}")
        if built.base_name:
            ctx.say(f"build-image: on {built.base_name}")
        return passed(time.monotonic() - started, detail=built.manifest_digest)

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, BuildImageParams)
        if ran is not None and not ran.ok:
            return ran
        record = read_record(ctx)
        store = LayoutStore(image_store_dir(ctx))
        try:
            manifest, media_type = store.get_manifest(record["repository"], record["digest"])
        except NotFoundError as error:
            return failed(f"{error.message}; run again with --no-cache to rebuild it")
        missing = [t for t in commit_tags(ctx, params.version) if t not in record["tags"]]
        if missing:  # a cache hit for a new commit: the same image, tagged with it too
            store.put_manifest(record["repository"], manifest, media_type, tuple(missing))
            record["tags"] = [*record["tags"], *missing]
            write_record(ctx, record)
        content = record_path(ctx).read_bytes()
        summary = {k: record[k] for k in ("repository", "digest", "tags")}
        ctx.evidence.publish(IMAGE_REPORT, content, summary)
        return ran if ran is not None else passed(detail=record["digest"])

    def _build(
        self,
        params: BuildImageParams,
        ctx: StepContext,
        store: LayoutStore,
        tags: tuple[str, ...],
        runner: CommandRunner,
    ) -> BuiltImage:
        spec = image_spec(params, ctx, store)
        if params.mode is BuildMode.CONTAINERFILE:
            tool = find_build_tool(ctx.which)
            containerfile = find_containerfile(ctx.workspace, params.containerfile)
            return build_containerfile(
                spec,
                store,
                params.repository,
                tags,
                containerfile=containerfile,
                context=ctx.workspace,
                tool=tool,
                run=runner,
            )
        return build_image(spec, store, params.repository, tags, run=runner)


def image_spec(params: BuildImageParams, ctx: StepContext, store: LayoutStore) -> ImageSpec:
    dependencies = None
    found = dependency_file(params, ctx) if params.mode is BuildMode.PYTHON else None
    if params.packages and params.mode is BuildMode.PYTHON:
        found = with_packages(ctx, found, params.packages)
    if found is not None:
        python = ctx.which("python") or ctx.which("python3") or sys.executable
        cache = DependencyCache(store.root / DEPS_CACHE_DIR)
        index = {name: ctx.env[name] for name in INDEX_SETTINGS if ctx.env.get(name)}
        dependencies = Dependencies(found[0], python, cache, origin=found[1], index=index)
    return ImageSpec(
        app=AppFiles(ctx.workspace, tuple(params.app), tuple(params.exclude)),
        base=base_image(params, ctx, store),
        dependencies=dependencies,
        workdir=params.workdir,
        entrypoint=tuple(params.entrypoint) if params.entrypoint is not None else None,
        cmd=tuple(params.cmd) if params.cmd is not None else None,
        env=dict(params.env),
        port=params.port,
        user=params.user,
        labels=dict(params.labels),
        revision=ctx.env.get("CONVEYOR_COMMIT_SHA", ""),
        source=params.source or ctx.env.get("CONVEYOR_SOURCE_URL", ""),
        version=params.version,
        source_date_epoch=source_date_epoch(ctx),
    )


def with_packages(
    ctx: StepContext, found: tuple[Path, str] | None, packages: list[str]
) -> tuple[Path, str]:
    """A requirements file in the job's folder: the project's (included) and `packages:`."""
    path = job_output_dir(ctx.workspace, ctx.job_id) / "requirements-and-packages.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    included = [f"-r {found[0]}"] if found is not None else []
    path.write_text("\n".join([*included, *packages]) + "\n")
    origin = f"{found[1]} and `packages:`" if found is not None else "`packages:`"
    return path, origin


def dependency_file(params: BuildImageParams, ctx: StepContext) -> tuple[Path, str] | None:
    """The requirements file pip installs and what to call it, or None for no dependencies.
    pyproject.toml's are written out as one, in the job's output folder."""
    source = params.dependencies
    if params.requirements is not None or source is DependencySource.REQUIREMENTS:
        name = params.requirements or DEFAULT_REQUIREMENTS
        if not (ctx.workspace / name).is_file():
            raise ConveyorError(f"requirements file {name} is not in the workspace")
        return ctx.workspace / name, name
    pyproject = ctx.workspace / PYPROJECT
    if source is DependencySource.NONE:
        return None
    if not pyproject.is_file():
        if source is DependencySource.PYPROJECT or params.extras:
            raise ConveyorError(f"build-image reads {PYPROJECT}, which is not in the workspace")
        return None
    lines = pyproject_requirements(pyproject, params.extras)
    if lines is None and source is DependencySource.PYPROJECT:
        raise ConveyorError(f"{PYPROJECT} has no [project] dependencies to install")
    if not lines:
        return None
    derived = job_output_dir(ctx.workspace, ctx.job_id) / "pyproject-requirements.txt"
    derived.parent.mkdir(parents=True, exist_ok=True)
    derived.write_text("".join(f"{line}\n" for line in lines))
    return derived, PYPROJECT


def say_dependencies(ctx: StepContext, report: DependencyReport | None) -> None:
    """What pip installed, and a warning when the dependencies are not a hashed lock."""
    if report is None:
        return
    ctx.say(
        f"build-image: {len(report.closure)} packages from {report.origin}: "
        f"{' '.join(report.closure) or 'none'}"
    )
    warning = report.warning()
    if warning is not None:
        ctx.say(f"build-image: {warning}")


def base_image(params: BuildImageParams, ctx: StepContext, store: LayoutStore) -> BaseImage | None:
    """`base:` as given; `scratch` for none; in python mode, by default, Conveyor's Python
    base (debian_base.py), built from Debian's packages into the state folder's cache."""
    if params.base == SCRATCH:
        return None
    if params.base:
        return BaseImage.parse(params.base)
    if params.mode is not BuildMode.PYTHON:
        return None  # a Containerfile names its own base (FROM)
    cache = cache_root_of(store.root, {**os.environ, **ctx.env})
    built = ensure_python_base(store, cache, host_architecture())
    return BaseImage(built.repository, built.digest)


def image_store_dir(ctx: StepContext) -> Path:
    where = ctx.env.get(STORE_ENV)
    if not where:
        raise ConveyorError(
            f"build-image needs the image store, and {STORE_ENV} is not set",
            hint=f"the engine sets it for every job; outside a pipeline, set {STORE_ENV}=DIR",
        )
    return Path(where)


def commit_tags(ctx: StepContext, version: str | None) -> tuple[str, ...]:
    sha = ctx.env.get("CONVEYOR_COMMIT_SHA")
    if not sha:
        raise ConveyorError("build-image tags images by commit, and CONVEYOR_COMMIT_SHA is unset")
    return (sha, version) if version else (sha,)


def source_date_epoch(ctx: StepContext) -> int:
    text = ctx.env.get("SOURCE_DATE_EPOCH") or "0"
    if not text.isdigit():
        raise ConveyorError(f"SOURCE_DATE_EPOCH must be seconds since 1970, not {text!r}")
    return int(text)


def record_path(ctx: StepContext) -> Path:
    return job_output_dir(ctx.workspace, ctx.job_id) / "image.json"


def write_record(ctx: StepContext, record: dict[str, Any]) -> None:
    path = record_path(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def read_record(ctx: StepContext) -> dict[str, Any]:
    try:
        record = json.loads(record_path(ctx).read_text())
    except (OSError, ValueError) as error:
        raise ConveyorError(f"the image record of {ctx.job_id} is missing: {error}") from None
    if not isinstance(record, dict):
        raise ConveyorError(f"the image record of {ctx.job_id} is not a JSON object")
    return record


class ExecutorRunner:
    """A CommandRunner for the builder's thread: each command runs through the job's
    executor on the event loop, so its output reaches the job log and its timeout holds."""

    def __init__(self, ctx: StepContext, loop: asyncio.AbstractEventLoop) -> None:
        self.ctx = ctx
        self.loop = loop
        self.running: set[concurrent.futures.Future[Any]] = set()

    def __call__(self, argv: list[str], env: Mapping[str, str]) -> None:
        scoped = dataclasses.replace(self.ctx, env={**self.ctx.env, **env})
        future = asyncio.run_coroutine_threadsafe(scoped.run_tool(argv), self.loop)
        self.running.add(future)
        try:
            ran = future.result()
        finally:
            self.running.discard(future)
        if not ran.result.ok:
            raise ConveyorError(ran.failure_detail(Path(argv[0]).name))

    def cancel(self) -> None:
        """Stops the command in flight (its executor ends the process group)."""
        for future in list(self.running):
            future.cancel()
