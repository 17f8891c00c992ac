"""`conveyor image base`: Conveyor's Python base image, built into the project's store
(from the suite's shared cache) and described."""

from __future__ import annotations

from conftest import MakeProject, run_cli
from conveyor.supply.oci.layout import LayoutStore

SPEC = "version: 1\njobs:\n  noop: {run: 'true'}\n"


def test_image_base_puts_the_base_in_the_store_and_lists_its_packages(
    git_project: MakeProject,
) -> None:
    project = git_project(SPEC)

    shown = run_cli(["image", "base", "-o", "json"], project.root)
    again = run_cli(["image", "base"], project.root)

    assert shown.exit_code == 0, shown.stderr
    described = shown.json()
    repository, _, digest = described["image"].partition("@")
    assert repository == "conveyor/python" and described["python"] == "3.11"
    store = LayoutStore(project.project().state_dir / "images")
    assert store.resolve(repository, "3.11-bookworm") == digest
    names = {pin.partition("=")[0] for pin in described["packages"]}
    assert {"python3.11", "libc6", "ca-certificates"} <= names
    assert again.exit_code == 0 and "(from the cache)" in again.stdout
