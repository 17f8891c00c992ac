"""Push delta: what pushing an image again costs after one source file changed.

An image of about 20 MB in 3 layers (a 4 MB base-like layer and a 15 MB deps-like layer,
both random but seeded so they do not compress, and an app layer of 5 source files) plus
a small config is built into an OCI layout (`LayoutStore`) and pushed to a real registry
(`docker-registry`, started here on 127.0.0.1); then one app file changes and the new
image is pushed again. Each round pushes into a fresh repository of the same registry,
so its first push uploads everything.

    .venv/bin/python bench/push_delta.py --repeat 5
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from common import (
    Figure,
    Samples,
    console,
    free_port,
    header,
    print_figures,
    print_samples,
    repeat_parser,
)
from conveyor.supply.oci.copy import CopyReport, copy_image
from conveyor.supply.oci.layers import LayerBlob, LayerEntry, build_layer
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.model import CONFIG, MANIFEST, Descriptor, Manifest, canonical_json
from conveyor.supply.oci.registry import RegistryStore

GOAL_PERCENT = 5.0
MIB = 1024 * 1024
MTIME = 1_700_000_000
APP_FILES = 5
APP_FILE_BYTES = 8 * 1024


def seeded_files(seed: int, prefix: str, count: int, size: int) -> list[LayerEntry]:
    generator = random.Random(seed)
    return [
        LayerEntry.of_bytes(f"{prefix}/file{number:02}.bin", generator.randbytes(size))
        for number in range(count)
    ]


def app_files(revision: int) -> list[LayerEntry]:
    """5 source-like files (seeded text, compressing about 2:1); `revision` changes the last."""
    entries = []
    for number in range(APP_FILES):
        seed = 1000 * number + (revision if number == APP_FILES - 1 else 0)
        text = random.Random(seed).randbytes(APP_FILE_BYTES // 2).hex()
        entries.append(LayerEntry.of_bytes(f"app/module{number}.py", text.encode()))
    return entries


def store_image(layout: LayoutStore, layers: list[LayerBlob], tag: str) -> int:
    """Put the layers, a config and a manifest into `layout`; returns the image's size."""
    config = canonical_json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["python", "-m", "app"]},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        }
    )
    manifest = Manifest(
        config=Descriptor.of(CONFIG, config),
        layers=tuple(layer.descriptor() for layer in layers),
    ).to_bytes()
    for blob in (config, *(layer.data for layer in layers)):
        layout.put_blob("bench", blob)
    layout.put_manifest("bench", manifest, MANIFEST, (tag,))
    return len(manifest) + len(config) + sum(layer.size for layer in layers)


@contextlib.contextmanager
def running_registry(workdir: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("docker-registry is not installed: apt-get install -y docker-registry")
    port = free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
        f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    url = f"http://127.0.0.1:{port}"
    with (workdir / "registry.log").open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    try:
        wait_ready(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v2/", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"the registry at {url} did not start")


def timed_push(
    layout: LayoutStore, remote: RegistryStore, tag: str, repo: str
) -> tuple[float, CopyReport]:
    started = time.perf_counter()
    report = copy_image(layout, "bench", tag, remote, repo, tags=(tag,))
    return time.perf_counter() - started, report


def measure(repeat: int) -> list[Figure]:
    header("push delta: one app file changed, pushed again to a real registry")
    with tempfile.TemporaryDirectory(prefix="bench-push-") as scratch:
        workdir = Path(scratch)
        layout = LayoutStore(workdir / "layout")
        base = build_layer(seeded_files(1, "usr/lib", 4, MIB), MTIME)
        deps = build_layer(seeded_files(2, "site-packages", 15, MIB), MTIME)
        before = build_layer(app_files(1), MTIME)
        after = build_layer(app_files(2), MTIME)
        image_bytes = store_image(layout, [base, deps, before], "c1")
        store_image(layout, [base, deps, after], "c2")
        console.print(f"image: {image_bytes / MIB:.1f} MiB; app layer {before.size} bytes")
        first, second = Samples("first push (empty repository)"), Samples("push after the change")
        delta_bytes = 0
        with running_registry(workdir) as url, RegistryStore(url, insecure=True) as remote:
            for round_number in range(repeat):
                repo = f"bench/round{round_number}"
                took, _ = timed_push(layout, remote, "c1", repo)
                first.seconds.append(took)
                took, report = timed_push(layout, remote, "c2", repo)
                second.seconds.append(took)
                manifest_bytes = len(layout.get_manifest("bench", "c2")[0])
                delta_bytes = report.bytes_uploaded + manifest_bytes
                console.print(
                    f"round {round_number + 1}: uploaded {report.blobs_uploaded} blobs "
                    f"({report.bytes_uploaded} B) + the manifest ({manifest_bytes} B), "
                    f"skipped {report.blobs_skipped}"
                )
    print_samples("push wall time", [first, second], baseline=first)
    percent = 100 * delta_bytes / image_bytes
    return [
        Figure("push delta: bytes pushed again, % of the image", percent, "%", GOAL_PERCENT),
        Figure("push delta: first push", first.median, "s"),
        Figure("push delta: push after one file changed", second.median, "s"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    print_figures("push delta", measure(args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
