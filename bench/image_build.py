"""Image builds: reproducibility, and a warm build of the sample image against podman.

Builds examples/shop's image (its app files on no base, its requirements installed into
a dependency layer) twice into two fresh stores and compares the manifest digests; then
times warm builds (dependency layer cached) side by side with `podman build` of an
equivalent Containerfile (`FROM scratch`, the same two COPYs) with its layer cache warm.

    .venv/bin/python bench/image_build.py --repeat 5
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Figure, Samples, alternate, header, print_figures, print_samples, repeat_parser
from conveyor.service.demo import demo_env, find_sample
from conveyor.supply.oci.build import (
    AppFiles,
    Dependencies,
    DependencyCache,
    ImageSpec,
    build_image,
)
from conveyor.supply.oci.containerfile import podman_environment
from conveyor.supply.oci.layout import LayoutStore

WARM_GOAL = 3.0
CONTAINERFILE = """FROM scratch
COPY deps /app/deps
COPY app /app/app
WORKDIR /app
ENV PYTHONPATH=/app/deps
ENTRYPOINT ["python", "-m", "app"]
"""


def spec(shop: Path, cache: DependencyCache) -> ImageSpec:
    return ImageSpec(
        app=AppFiles(shop, include=("app/**/*.py",)),
        dependencies=Dependencies(shop / "requirements.txt", cache=cache),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/deps"},
        port=8000,
        revision="0" * 40,
        source_date_epoch=1_700_000_000,
    )


def conveyor_build(shop: Path, store_dir: Path) -> tuple[float, str]:
    store = LayoutStore(store_dir)
    cache = DependencyCache(store_dir / ".conveyor-cache" / "deps")
    started = time.perf_counter()
    built = build_image(spec(shop, cache), store, "shop", ("bench",))
    return time.perf_counter() - started, built.manifest_digest


def podman_context(shop: Path, deps: Path, scratch: Path) -> Path:
    context = scratch / "context"
    shutil.copytree(shop / "app", context / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(deps, context / "deps")
    (context / "Containerfile").write_text(CONTAINERFILE)
    return context


def podman_build(context: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["podman", "build", "-q", "-t", "bench/shop", str(context)],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def measure(repeat: int) -> list[Figure]:
    header("image builds: reproducible, and warm against podman build")
    shop = find_sample()
    os.environ.update(demo_env())  # pip installs from the wheelhouse when there is one
    with tempfile.TemporaryDirectory(prefix="bench-image-") as scratch_name:
        scratch = Path(scratch_name)
        cold_a, digest_a = conveyor_build(shop, scratch / "store-a")
        _, digest_b = conveyor_build(shop, scratch / "store-b")
        deps = scratch / "deps"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-compile",
                "--target",
                str(deps),
                "-r",
                str(shop / "requirements.txt"),
            ],
            check=True,
        )
        context = podman_context(shop, deps, scratch)
        (scratch / "podman").mkdir()
        with podman_environment(scratch / "podman") as podman_env:
            env = {**os.environ, **podman_env}
            podman_build(context, env)  # fills its layer cache
            samples = alternate(
                {
                    "conveyor build-image (warm)": lambda: conveyor_build(
                        shop, scratch / "store-a"
                    )[0],
                    "podman build (warm cache)": lambda: podman_build(context, env),
                },
                repeat,
            )
    print(f"two cold builds in two stores: {digest_a}\n{'':31}{digest_b}")
    warm = samples["conveyor build-image (warm)"]
    podman = samples["podman build (warm cache)"]
    print_samples("examples/shop image", [warm, podman, Samples("cold (once)", [cold_a])], podman)
    figures = [
        Figure("identical digests (1 = yes)", float(digest_a == digest_b), ""),
        Figure("warm build", warm.median, "s", WARM_GOAL),
        Figure("conveyor / podman build", warm.median / podman.median, "x"),
    ]
    print_figures("image build", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    measure(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
