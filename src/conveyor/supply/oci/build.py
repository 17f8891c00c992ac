"""The reproducible image builder: project files (+ pip dependencies) on an optional base.

Layers, in order: the base image's, then the dependencies (`pip install --target` of a
requirements file, pip resolving the whole closure, at /app/deps, on PYTHONPATH; see
`dependencies.py`), then the application files (at the working directory). Each new
layer is built by `layers.build_layer`, so the same inputs give the same manifest digest,
byte for byte. The app layer's mtimes are the commit time (SOURCE_DATE_EPOCH). The
dependency layer's are 0: it is a function of the closure pip installed, which a lock
fixes; the warm cache (`DependencyCache`, keyed by what decides the closure) gives what
a cold build would, so a commit that leaves the requirements unchanged keeps its digest.

Commands (pip) run through a `CommandRunner`, so the `build-image` step can send them
through its executor; `run_command` is the plain subprocess runner for other callers.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from conveyor.errors import ConveyorError
from conveyor.supply.oci import model
from conveyor.supply.oci.dependencies import (
    DEPS_DIR,
    Dependencies,
    DependencyCache,
    DependencyReport,
    Installed,
    dependency_key,
    installed_closure,
    missing_from_lock,
    pip_install_argv,
    unpinned_in,
    write_closure,
)
from conveyor.supply.oci.interpreter import LABEL_DEPS_PYTHON, python_version_of
from conveyor.supply.oci.layers import build_layer, normalise_path, tree_entries
from conveyor.supply.oci.model import Descriptor, Manifest, canonical_json, digest_of
from conveyor.supply.oci.requirements import Pinning, pinning_of
from conveyor.supply.oci.store import ImageStore, check_tag

__all__ = ["DEPS_DIR", "Dependencies", "DependencyCache", "DependencyReport"]

DEPS_MTIME = 0
ANNOTATION_BASE_NAME = "org.opencontainers.image.base.name"
_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# Docker media types a base image may carry; the bytes are the same as the OCI ones.
_OCI_LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": model.LAYER_TAR_GZIP,
}
_INDEX_TYPES = {model.INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}


class CommandRunner(Protocol):
    def __call__(self, argv: list[str], env: Mapping[str, str]) -> None:
        """Run `argv` with `env` added to the environment; ConveyorError when it fails."""
        ...


def run_command(argv: list[str], env: Mapping[str, str]) -> None:
    done = subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ConveyorError(f"{Path(argv[0]).name} failed (exit {done.returncode}): {tail}")


@dataclass(frozen=True)
class BaseImage:
    """An image already in the store: `repository:tag` or `repository@sha256:...`."""

    repository: str
    reference: str

    @classmethod
    def parse(cls, text: str) -> BaseImage:
        name, at, digest = text.partition("@")
        if at:
            return cls(name, digest)
        name, colon, tag = text.rpartition(":")
        if not colon or not name or "/" in tag:
            raise ConveyorError(
                f"base image {text!r} names no tag or digest",
                hint="write repository:tag or repository@sha256:<hex>",
            )
        return cls(name, tag)

    def __str__(self) -> str:
        separator = "@" if model.is_digest(self.reference) else ":"
        return f"{self.repository}{separator}{self.reference}"


@dataclass(frozen=True)
class AppFiles:
    root: Path
    include: tuple[str, ...] = ("**",)
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSpec:
    app: AppFiles | None = None
    base: BaseImage | None = None
    dependencies: Dependencies | None = None
    workdir: str = "/app"
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    user: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    revision: str = ""
    source: str = ""
    version: str | None = None
    source_date_epoch: int = 0

    @property
    def created(self) -> str:
        return rfc3339(self.source_date_epoch)


@dataclass(frozen=True)
class Layer:
    """A layer of the image being built; `data` is None when the store already holds it."""

    descriptor: Descriptor
    diff_id: str
    data: bytes | None = None


@dataclass(frozen=True)
class BuiltImage:
    repository: str
    manifest_digest: str
    config_digest: str
    layers: list[Descriptor]
    manifest: bytes
    tags: tuple[str, ...]
    base_digest: str | None = None
    base_name: str | None = None
    dependencies: DependencyReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.manifest_digest,
            "media_type": model.MANIFEST,
            "config_digest": self.config_digest,
            "tags": list(self.tags),
            "layers": [layer.to_json() for layer in self.layers],
            "base": {"name": self.base_name, "digest": self.base_digest}
            if self.base_digest
            else None,
            "dependencies": list(self.dependencies.closure) if self.dependencies else None,
        }


@dataclass
class _Parts:
    """What the base contributes, and what the image accumulates."""

    layers: list[Layer] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    architecture: str = ""
    base_digest: str | None = None


def build_image(
    spec: ImageSpec,
    store: ImageStore,
    repository: str,
    tags: tuple[str, ...],
    *,
    run: CommandRunner = run_command,
) -> BuiltImage:
    """Build, push every blob to `store`, tag the manifest; returns what was built."""
    for tag in tags:
        check_tag(tag)
    parts = _from_base(spec.base, store, repository) if spec.base else _Parts()
    parts.architecture = parts.architecture or host_architecture()
    report = None
    if spec.dependencies is not None:
        layer, created_by, report = _dependency_layer(spec.dependencies, store, repository, run)
        _add_layer(parts, spec, (layer, created_by))
    if spec.app is not None:
        _add_layer(parts, spec, _app_layer(spec))
    if not parts.layers:
        raise ConveyorError("an image needs at least one layer: a base, dependencies or files")
    for layer in parts.layers:
        if layer.data is not None and not store.has_blob(repository, layer.descriptor.digest):
            store.put_blob(repository, layer.data, layer.descriptor.digest)
    config = canonical_json(_config(spec, parts))
    config_digest = store.put_blob(repository, config)
    manifest = Manifest(
        config=Descriptor.of(model.CONFIG, config),
        layers=tuple(layer.descriptor for layer in parts.layers),
        annotations=image_annotations(spec, parts.base_digest),
    ).to_bytes()
    digest = store.put_manifest(repository, manifest, model.MANIFEST, tags)
    return BuiltImage(
        repository=repository,
        manifest_digest=digest,
        config_digest=config_digest,
        layers=[layer.descriptor for layer in parts.layers],
        manifest=manifest,
        tags=tags,
        base_digest=parts.base_digest,
        base_name=str(spec.base) if spec.base else None,
        dependencies=report,
    )


def image_annotations(spec: ImageSpec, base_digest: str | None) -> dict[str, str]:
    annotations = {model.ANNOTATION_CREATED: spec.created}
    if spec.revision:
        annotations[model.ANNOTATION_REVISION] = spec.revision
    if spec.source:
        annotations[model.ANNOTATION_SOURCE] = spec.source
    if spec.version:
        annotations[model.ANNOTATION_VERSION] = spec.version
    if base_digest and spec.base:
        annotations[model.ANNOTATION_BASE_DIGEST] = base_digest
        annotations[ANNOTATION_BASE_NAME] = str(spec.base)
    return annotations


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_architecture() -> str:
    machine = platform.machine().lower()
    if machine not in _ARCHITECTURES:
        raise ConveyorError(f"cannot build images on a {machine} machine (amd64 or arm64 only)")
    return _ARCHITECTURES[machine]


def _app_layer(spec: ImageSpec) -> tuple[Layer, str]:
    assert spec.app is not None
    entries = tree_entries(spec.app.root, spec.workdir, spec.app.include, spec.app.exclude)
    if not entries:
        raise ConveyorError(
            f"no project file matches {list(spec.app.include)} (excluding "
            f"{list(spec.app.exclude)}) in {spec.app.root}"
        )
    deps = normalise_path(DEPS_DIR)
    if spec.dependencies and any(normalise_path(e.path)[: len(deps)] == deps for e in entries):
        raise ConveyorError(f"project files would land in {DEPS_DIR}, the dependencies' folder")
    blob = build_layer(entries, spec.source_date_epoch)
    layer = Layer(blob.descriptor(), blob.diff_id, blob.data)
    return layer, f"conveyor build-image: {len(entries)} project files in {spec.workdir}"


def _add_layer(parts: _Parts, spec: ImageSpec, layer: tuple[Layer, str]) -> None:
    parts.layers.append(layer[0])
    parts.history.append({"created": spec.created, "created_by": layer[1]})


def _from_base(base: BaseImage, store: ImageStore, repository: str) -> _Parts:
    manifest_bytes, media_type = store.get_manifest(base.repository, base.reference)
    digest = digest_of(manifest_bytes)
    if media_type in _INDEX_TYPES:
        digest = _platform_manifest(manifest_bytes, base)
        manifest_bytes, media_type = store.get_manifest(base.repository, digest)
    manifest = Manifest.from_bytes(manifest_bytes)
    config = json.loads(store.get_blob(base.repository, manifest.config.digest))
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(diff_ids) != len(manifest.layers):
        raise ConveyorError(f"base image {base}: its config and manifest disagree on layers")
    layers = []
    for descriptor, diff_id in zip(manifest.layers, diff_ids, strict=True):
        if not store.has_blob(repository, descriptor.digest):
            data = store.get_blob(base.repository, descriptor.digest)
            store.put_blob(repository, data, descriptor.digest)
        media = _OCI_LAYER_TYPES.get(descriptor.media_type, descriptor.media_type)
        layers.append(Layer(Descriptor(media, descriptor.digest, descriptor.size), diff_id))
    return _Parts(
        layers=layers,
        history=list(config.get("history") or []),
        config=dict(config.get("config") or {}),
        architecture=str(config.get("architecture") or ""),
        base_digest=digest,
    )


def _platform_manifest(index_bytes: bytes, base: BaseImage) -> str:
    architecture = host_architecture()
    for entry in json.loads(index_bytes).get("manifests", []):
        wanted = {"os": "linux", "architecture": architecture}
        if {k: (entry.get("platform") or {}).get(k) for k in wanted} == wanted:
            return str(entry["digest"])
    raise ConveyorError(f"base image {base} has no linux/{architecture} image")


def _config(spec: ImageSpec, parts: _Parts) -> dict[str, Any]:
    settings = dict(parts.config)
    env = _env_dict(settings.get("Env") or [])
    if spec.dependencies is not None:
        env["PYTHONPATH"] = DEPS_DIR
    env.update(spec.env)
    settings["Env"] = [f"{name}={value}" for name, value in env.items()]
    if spec.entrypoint is not None:
        settings["Entrypoint"] = list(spec.entrypoint)
        settings.pop("Cmd", None)  # as a Containerfile's ENTRYPOINT resets CMD
    if spec.cmd is not None:
        settings["Cmd"] = list(spec.cmd)
    settings["WorkingDir"] = spec.workdir
    if spec.port is not None:
        settings["ExposedPorts"] = {**settings.get("ExposedPorts", {}), f"{spec.port}/tcp": {}}
    if spec.user is not None:
        settings["User"] = spec.user
    labels = {**(settings.get("Labels") or {}), **spec.labels}
    if spec.dependencies is not None:  # the builder's word, not the user's
        labels[LABEL_DEPS_PYTHON] = python_version_of(spec.dependencies.python)
    if labels:
        settings["Labels"] = labels
    return {
        "created": spec.created,
        "architecture": parts.architecture,
        "os": "linux",
        "config": {name: value for name, value in settings.items() if value not in (None, [])},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in parts.layers]},
        "history": parts.history,
    }


def _env_dict(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        env[name] = value
    return env


# --- dependencies ----------------------------------------------------------------------


def _dependency_layer(
    deps: Dependencies, store: ImageStore, repository: str, run: CommandRunner
) -> tuple[Layer, str, DependencyReport]:
    try:
        requirements = deps.requirements.read_bytes()
    except OSError as error:
        raise ConveyorError(f"cannot read {deps.name}: {error.strerror}") from None
    text = requirements.decode(errors="replace")
    pinning = pinning_of(text)
    key = dependency_key(requirements, deps, pinning)
    what = f"the dependencies of {deps.name}" if deps.name.endswith(".toml") else f"-r {deps.name}"
    created_by = f"conveyor build-image: pip install {what}"
    installed = deps.cache.get(key) if deps.cache else None
    if installed is None or not store.has_blob(repository, installed.digest):
        installed, data = _install(deps, pinning, run)
        if deps.cache is not None:
            deps.cache.put(key, installed)
    else:
        data = None
    report = DependencyReport(
        deps.name, pinning, installed.closure, unpinned_in(installed.closure, text)
    )
    return Layer(installed.descriptor, installed.diff_id, data), created_by, report


def _install(deps: Dependencies, pinning: Pinning, run: CommandRunner) -> tuple[Installed, bytes]:
    """pip into a scratch folder, the closure written beside what it installed, packed."""
    with tempfile.TemporaryDirectory(prefix="conveyor-deps-") as scratch:
        target, log = Path(scratch) / "target", Path(scratch) / "pip.log"
        try:
            run(pip_install_argv(deps.python, deps.requirements, target, pinning, log), {})
        except ConveyorError as error:
            incomplete = missing_from_lock(log, deps.name) if pinning is Pinning.HASHED else None
            raise (incomplete or error) from None
        target.mkdir(exist_ok=True)  # nothing to install: an empty layer, still recorded
        closure = installed_closure(target)
        write_closure(target, closure, deps.name)
        blob = build_layer(tree_entries(target, DEPS_DIR), DEPS_MTIME)
    return Installed.of(blob, closure), blob.data
