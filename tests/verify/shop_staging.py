"""A real staging deployment of the sample service (examples/shop), for the E2E, perf and
DAST steps' tests.

The image holds the shop's `app/` package (optionally with files laid over it, e.g. the
planted injection fixture) and its locked dependencies, on Conveyor's Python base; the
process runtime runs `python -m app` with the image's own interpreter. Staging
has two replicas behind the builtin router, as in the shop's own conveyor.yml.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.supply.oci.build import AppFiles, Dependencies, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore
from python_base import python_base, wheelhouse_pip

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
REPOSITORY = "shop"
CONVEYOR_YML = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 2
    health:
      readiness: {path: /healthz, interval: 100ms}
      ready_timeout: 30s
    drain: 0.2s
"""


@dataclass(frozen=True)
class StagingShop:
    project: Project
    url: str  # the staging router's base URL, no trailing slash
    image: str  # shop@sha256:...


def build_shop(project: Project, root: Path, overlays: tuple[Path, ...] = ()) -> str:
    """The shop's app (with `overlays` laid over it, in order) as an image; `shop@digest`."""
    source = root / f"shop-src-{len(list(root.glob('shop-src-*')))}"
    shutil.copytree(SHOP / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    for overlay in overlays:
        shutil.copytree(overlay, source, dirs_exist_ok=True)
    store = LayoutStore(project.state_dir / "images")
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(store),
        dependencies=Dependencies(SHOP / "requirements.txt", sys.executable),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/deps:/app"},
    )
    built = build_image(spec, store, REPOSITORY, (source.name,), run=wheelhouse_pip)
    return f"{REPOSITORY}@{built.manifest_digest}"


@contextmanager
def shop_in_staging(root: Path, overlays: tuple[Path, ...] = ()) -> Iterator[StagingShop]:
    """Deploy the shop to a fresh project's staging; stopped again on exit."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "conveyor.yml").write_text(textwrap.dedent(CONVEYOR_YML))
    project = Project.locate(root / "conveyor.yml")
    project.ensure_state_dir()
    image = build_shop(project, root, overlays)
    try:
        with project.open_store() as store:
            outcome = environments.deploy(project, store, "staging", image, actor="tester")
        if outcome.state is not DeployState.SUCCEEDED:
            raise RuntimeError(f"the shop did not deploy to staging: {outcome.reason}")
        yield StagingShop(project, outcome.url.rstrip("/"), image)
    finally:
        with project.open_store() as store:
            environments.stop_environment(project, store, "staging")
