"""Images Conveyor builds, read by the real tools: skopeo inspects and copies them, podman
runs them, and podman's own build lands in the store through the containerfile mode.

skopeo, podman and runc are declared dependencies of the test suite (apt `skopeo podman
runc busybox-static`): a machine without them fails here, it does not skip. podman runs
with the configuration docs/ENVIRONMENT.md describes, its storage in a temp dir that is
removed afterwards, with no network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.supply.oci import model
from conveyor.supply.oci.build import AppFiles, BuiltImage, ImageSpec, build_image, run_command
from conveyor.supply.oci.containerfile import (
    build_containerfile,
    find_containerfile,
    podman_environment,
)
from conveyor.supply.oci.layout import LayoutStore

pytestmark = pytest.mark.real

BUSYBOX = Path("/bin/busybox")
SHA = "5eed" * 10
EPOCH = 1_700_000_000
GREETING = "hello from conveyor"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install -y skopeo podman runc")
    return found


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        argv,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"{argv[0]} failed: {done.stderr}"
    return done.stdout


@pytest.fixture
def busybox_image(tmp_path: Path) -> tuple[Path, BuiltImage]:
    """A one-layer image holding /bin/busybox, built by Conveyor on no base."""
    if not BUSYBOX.is_file():
        pytest.fail("/bin/busybox is missing: apt-get install -y busybox-static")
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    spec = ImageSpec(
        app=AppFiles(root),
        workdir="/",
        entrypoint=("/bin/busybox", "echo", GREETING),
        revision=SHA,
        source_date_epoch=EPOCH,
    )
    layout = tmp_path / "images"
    return layout, build_image(spec, LayoutStore(layout), "hello", (SHA,))


@pytest.fixture
def podman_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    tool("podman")
    tool("runc")
    scratch = tmp_path / "podman"
    scratch.mkdir()
    try:
        with podman_environment(scratch) as env:
            yield env
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_skopeo_inspects_the_image_and_reports_the_same_digest(
    busybox_image: tuple[Path, BuiltImage],
) -> None:
    layout, built = busybox_image

    inspected = json.loads(run([tool("skopeo"), "inspect", f"oci:{layout}:hello:{SHA}"]))
    raw = run([tool("skopeo"), "inspect", "--raw", f"oci:{layout}:hello:{SHA}"])

    assert inspected["Digest"] == built.manifest_digest
    assert inspected["Layers"] == [d.digest for d in built.layers]
    assert (inspected["Os"], inspected["Created"]) == ("linux", "2023-11-14T22:13:20Z")
    assert raw.encode() == built.manifest


def test_skopeo_copies_the_image_into_a_layout_the_store_then_reads(
    busybox_image: tuple[Path, BuiltImage], tmp_path: Path
) -> None:
    layout, built = busybox_image
    copy = tmp_path / "copy"

    run([tool("skopeo"), "copy", f"oci:{layout}:hello:{SHA}", f"oci:{copy}:hello:{SHA}"])

    store = LayoutStore(copy)
    assert store.resolve("hello", SHA) == built.manifest_digest
    manifest, _ = store.get_manifest("hello", SHA)
    assert model.Manifest.from_bytes(manifest).annotations[model.ANNOTATION_REVISION] == SHA
    assert store.repositories() == ["hello"]


def test_podman_runs_the_image_conveyor_built(
    busybox_image: tuple[Path, BuiltImage], podman_env: dict[str, str]
) -> None:
    layout, _ = busybox_image

    output = run(
        [tool("podman"), "run", "--rm", "--network", "none", f"oci:{layout}:hello:{SHA}"],
        podman_env,
    )

    assert output.strip() == GREETING


def test_a_containerfile_built_by_podman_lands_in_the_store_annotated(
    tmp_path: Path, podman_env: dict[str, str]
) -> None:
    context = tmp_path / "context"
    context.mkdir()
    shutil.copy(BUSYBOX, context / "busybox")
    (context / "Containerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox", "echo", "built"]\n'
    )
    store = LayoutStore(tmp_path / "images")
    spec = ImageSpec(revision=SHA, version="2.0", source_date_epoch=EPOCH)

    built = build_containerfile(
        spec,
        store,
        "hello",
        (SHA, "2.0"),
        containerfile=find_containerfile(context),
        context=context,
        tool=tool("podman"),
        run=run_command,
    )

    assert store.resolve("hello", "2.0") == built.manifest_digest
    annotations = model.Manifest.from_bytes(built.manifest).annotations
    assert annotations[model.ANNOTATION_REVISION] == SHA
    assert annotations[model.ANNOTATION_CREATED] == "2023-11-14T22:13:20Z"
    output = run(
        [tool("podman"), "run", "--rm", "--network", "none", f"oci:{store.root}:hello:{SHA}"],
        podman_env,
    )
    assert output.strip() == "built"
