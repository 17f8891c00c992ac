"""`conveyor init`: look at the folder, write the conveyor.yml that fits it, and prepare
the state folder (its .gitignore, and the signing key the generated file's `sign` job
and admission policy use)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError, SpecError
from conveyor.service.project import Project
from conveyor.spec.detect import Detection, detect
from conveyor.spec.images import ImagesConfig
from conveyor.spec.loader import parse_pipeline
from conveyor.spec.starter import render, render_minimal
from conveyor.steps.registry import STEP_PARAMS


@dataclass(frozen=True)
class Initialized:
    file: Path
    state_dir: Path
    detection: Detection
    full: bool  # the whole delivery flow, not the minimal file
    signing_key: Path | None  # made by this init (None: there was one, or none is needed)


def initialize(directory: Path, *, force: bool) -> Initialized:
    target = directory / "conveyor.yml"
    if target.exists() and not force:
        raise ConveyorError(f"{target} already exists", hint="pass --force to overwrite it")
    if directory.exists() and not directory.is_dir():
        raise ConveyorError(f"{directory} is not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    found = detect(directory)
    text, full = _checked(found, directory, target)
    _write_atomically(target, text)
    # The state folder ignores itself (all but exceptions.yml) from the start, so a
    # secrets.env put there before the first run is never committed by accident.
    project = Project.locate(target)
    project.ensure_state_dir()
    key = _signing_key(directory) if full else None
    return Initialized(target.resolve(), project.state_dir, found, full, key)


def _checked(found: Detection, directory: Path, target: Path) -> tuple[str, bool]:
    """The file to write, validated as `conveyor lint` would; a full file that does not
    validate (an odd project) gives way to the minimal one rather than a broken file."""
    if found.is_web_app:
        text = render(found, directory)
        try:
            parse_pipeline(text, str(target), steps=STEP_PARAMS)
            return text, True
        except SpecError:
            pass
    text = render_minimal(found, directory)
    parse_pipeline(text, str(target), steps=STEP_PARAMS)
    return text, False


def _write_atomically(target: Path, text: str) -> None:
    """Nothing half-written: a temporary file beside the target, then renamed over it."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _signing_key(directory: Path) -> Path | None:
    """The key `sign` uses by default (images.signing_key), made when there is none."""
    from conveyor.supply.keys import generate_keypair

    private = directory / ImagesConfig().signing_key
    if private.exists():
        return None
    pair = generate_keypair(private.parent, private.name.removesuffix(".key"))
    return pair.private_path
