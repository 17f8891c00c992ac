"""The `containerfile` mode: the project's own Containerfile/Dockerfile, built by podman.

podman (or buildah) builds with `--timestamp` = the commit time (so layer mtimes and the
config's dates do not depend on the clock) in a throwaway storage, configured as these
machines need (runc, cgroupfs, vfs; see docs/ENVIRONMENT.md), then pushes the image as
OCI into a scratch layout. The blobs are copied from there into the image store and the
manifest gets the same annotations as the Python builder's (revision, source, created,
version) before it is stored and tagged: so this mode works with any ImageStore, and
the store's own locking keeps concurrent tags safe.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.supply.oci import model
from conveyor.supply.oci.build import BuiltImage, CommandRunner, ImageSpec, image_annotations
from conveyor.supply.oci.model import Manifest
from conveyor.supply.oci.store import ImageStore, check_tag

CONTAINERFILE_NAMES = ("Containerfile", "Dockerfile")
BUILD_TOOLS = ("podman", "buildah")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
"""
STORAGE_CONF = """\
[storage]
driver = "vfs"
graphroot = "{graphroot}"
runroot = "{runroot}"
"""
_SCRATCH_REF = "conveyor-build"
_SHORT_TMP = "/tmp"  # noqa: S108 (a private, randomly named folder is made inside)


def find_containerfile(context: Path, name: str | None = None) -> Path:
    """`name` in the context, else its Containerfile or Dockerfile."""
    candidates = [name] if name else list(CONTAINERFILE_NAMES)
    for candidate in candidates:
        path = context / candidate
        if path.is_file():
            return path
    raise ConveyorError(
        f"no {' or '.join(candidates)} in {context}",
        hint="add a Containerfile, or use mode: python",
    )


def find_build_tool(which: Callable[[str], str | None]) -> str:
    for tool in BUILD_TOOLS:
        found = which(tool)
        if found:
            return found
    raise ConveyorError(
        "mode: containerfile needs podman or buildah, and neither is installed (or on PATH)",
        hint="apt-get install podman runc (or use mode: python, which needs neither)",
    )


@contextlib.contextmanager
def podman_environment(scratch: Path) -> Iterator[dict[str, str]]:
    """CONTAINERS_CONF and CONTAINERS_STORAGE_CONF for a throwaway storage in `scratch`.

    The runroot gets a short folder of its own under /tmp: with a runroot path over
    about 50 characters (pytest's temp dirs), conmon cannot signal the container's exit
    and every `podman run` waits out conmon's 20 s timeout.
    """
    short_tmp = _SHORT_TMP if Path(_SHORT_TMP).is_dir() else None
    with tempfile.TemporaryDirectory(prefix="cvp-", dir=short_tmp) as runroot:
        (scratch / "containers.conf").write_text(CONTAINERS_CONF)
        storage = STORAGE_CONF.format(graphroot=scratch / "storage", runroot=runroot)
        (scratch / "storage.conf").write_text(storage)
        yield {
            "CONTAINERS_CONF": str(scratch / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(scratch / "storage.conf"),
        }


def build_containerfile(
    spec: ImageSpec,
    store: ImageStore,
    repository: str,
    tags: tuple[str, ...],
    *,
    containerfile: Path,
    context: Path,
    tool: str,
    run: CommandRunner,
) -> BuiltImage:
    """Build with podman/buildah, then store and tag the result in `store`."""
    for tag in tags:
        check_tag(tag)
    with (
        tempfile.TemporaryDirectory(prefix="conveyor-podman-") as tmp,
        podman_environment(Path(tmp)) as env,
    ):
        scratch = Path(tmp)
        image_id_file = scratch / "image-id"
        build = [tool, "build", "--file", str(containerfile), "--format", "oci"]
        build += ["--timestamp", str(spec.source_date_epoch), "--iidfile", str(image_id_file)]
        run([*build, str(context)], env)
        image_id = image_id_file.read_text().strip()
        layout = scratch / "layout"
        run([tool, "push", "--format", "oci", image_id, f"oci:{layout}:{_SCRATCH_REF}"], env)
        return import_layout(layout, spec, store, repository, tags)


def import_layout(
    layout: Path, spec: ImageSpec, store: ImageStore, repository: str, tags: tuple[str, ...]
) -> BuiltImage:
    """Copy the one image of a scratch OCI layout into `store`, annotated and tagged."""
    entries = json.loads((layout / "index.json").read_bytes())["manifests"]
    if len(entries) != 1:
        raise ConveyorError(f"expected one image in {layout}, found {len(entries)}")
    pushed = Manifest.from_bytes(_read_blob(layout, entries[0]["digest"]))
    for descriptor in (pushed.config, *pushed.layers):
        data = _read_blob(layout, descriptor.digest)
        store.put_blob(repository, data, descriptor.digest)
    annotations = {**pushed.annotations, **image_annotations(spec, None)}
    manifest = Manifest(pushed.config, pushed.layers, annotations).to_bytes()
    digest = store.put_manifest(repository, manifest, model.MANIFEST, tags)
    return BuiltImage(
        repository=repository,
        manifest_digest=digest,
        config_digest=pushed.config.digest,
        layers=list(pushed.layers),
        manifest=manifest,
        tags=tags,
    )


def _read_blob(layout: Path, digest: str) -> bytes:
    data = (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()
    if model.digest_of(data) != digest:
        raise ConveyorError(f"podman wrote blob {digest} whose content does not match")
    return data
