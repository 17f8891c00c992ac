"""The `archive` step: a reproducible .tar.gz of workspace files.

Entries are sorted, owned by 0:0, with mode normalised and mtime taken from
SOURCE_DATE_EPOCH (the commit time, set by the engine), so the same files give the same
bytes. Runs in-process: it needs nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import os
import tarfile
import time
from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import SimpleStep, StepContext
from conveyor.spec.globs import check_glob, filter_paths
from conveyor.spec.types import WorkspacePath
from conveyor.states import FailureClass


class ArchiveParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    paths: list[str] = Field(default_factory=lambda: ["**"], description="Globs to include.")
    output: WorkspacePath = Field(description="Where to write the archive, e.g. dist/app.tar.gz.")
    prefix: str = Field(default="", description="A folder name to put every entry under.")

    @field_validator("paths")
    @classmethod
    def _globs(cls, value: list[str]) -> list[str]:
        return [check_glob(p) for p in value]


class ArchiveStep(SimpleStep):
    name: ClassVar[str] = "archive"
    params_model: ClassVar[type[BaseModel]] = ArchiveParams
    version: ClassVar[str] = "1"

    def describe(self, params: BaseModel) -> str:
        assert isinstance(params, ArchiveParams)
        return f"archive {' '.join(params.paths)} -> {params.output} (prefix {params.prefix!r})"

    async def run(self, params: BaseModel, ctx: StepContext) -> ExecResult:
        assert isinstance(params, ArchiveParams)
        started = time.monotonic()
        mtime = int(ctx.env.get("SOURCE_DATE_EPOCH", "0") or 0)
        try:
            count, digest = await asyncio.to_thread(write_archive, ctx.workspace, params, mtime)
        except OSError as error:
            ctx.say(f"archive failed: {error}")
            return ExecResult(1, FailureClass.EXIT_CODE, time.monotonic() - started, str(error))
        if count == 0:
            ctx.say(f"archive: no file matched {params.paths}")
            return ExecResult(1, FailureClass.EXIT_CODE, time.monotonic() - started, "no files")
        ctx.say(f"archive: {count} files -> {params.output} ({digest})")
        return ExecResult(0, None, time.monotonic() - started)


def write_archive(workspace: Path, params: ArchiveParams, mtime: int) -> tuple[int, str]:
    output = workspace / params.output
    files = [
        p
        for p in filter_paths(_walk(workspace), params.paths)
        if (workspace / p).is_file() and p != params.output
    ]
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for relative in files:
            _add(
                tar,
                workspace / relative,
                f"{params.prefix.strip('/')}/{relative}".lstrip("/"),
                mtime,
            )
    data = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    return len(files), "sha256:" + hashlib.sha256(data).hexdigest()


def _add(tar: tarfile.TarFile, path: Path, name: str, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mtime = mtime
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with path.open("rb") as handle:
        tar.addfile(info, handle)


def _walk(root: Path) -> list[str]:
    found: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".conveyor")]
        base = Path(directory).relative_to(root)
        found.extend((base / name).as_posix() for name in filenames)
    return found
