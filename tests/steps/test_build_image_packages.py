"""build-image's `packages:`: requirement specifiers added to the project's dependencies
(the production server an app does not depend on itself)."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

from conveyor.supply.oci import model
from conveyor.supply.oci.build import DEPS_DIR
from conveyor.supply.oci.layout import LayoutStore
from steps.conftest import write_files
from steps.test_build_image import SHA, job_env, run_both, tiny_wheel


def _dependency_files(store_dir: Path) -> list[str]:
    store = LayoutStore(store_dir)
    manifest = model.Manifest.from_bytes(store.get_manifest("notes", SHA)[0])
    deps = gzip.decompress(store.get_blob("notes", manifest.layers[0].digest))
    with tarfile.open(fileobj=io.BytesIO(deps)) as tar:
        return tar.getnames()


def test_packages_alone_make_the_dependency_layer(tmp_path: Path) -> None:
    workspace = write_files(tmp_path / "ws", {"notes/__init__.py": ""})
    wheel = tiny_wheel(workspace)
    params = {
        "base": "scratch",
        "repository": "notes",
        "app": ["notes/**"],
        "packages": [f"./{wheel}"],
    }

    ran, final, log, _ = run_both(params, workspace, job_env(tmp_path / "images"))

    assert ran is not None and ran.ok and final.ok, log.text
    assert f"{DEPS_DIR.lstrip('/')}/tiny/__init__.py" in _dependency_files(tmp_path / "images")


def test_packages_join_the_requirements_file(tmp_path: Path) -> None:
    workspace = write_files(tmp_path / "ws", {"notes/__init__.py": ""})
    (workspace / "requirements.txt").write_text(f"./{tiny_wheel(workspace)}\n")
    params = {
        "base": "scratch",  # the dependency layer alone, on no base
        "repository": "notes",
        "requirements": "requirements.txt",
        "app": ["notes/**"],
        "packages": ["tiny==1.0"],
    }

    ran, final, log, _ = run_both(params, workspace, job_env(tmp_path / "images"))

    assert ran is not None and ran.ok and final.ok, log.text
    listed = (workspace / ".conveyor-out" / "scan" / "requirements-and-packages.txt").read_text()
    assert listed == f"-r {workspace / 'requirements.txt'}\ntiny==1.0\n"
    assert f"{DEPS_DIR.lstrip('/')}/tiny/__init__.py" in _dependency_files(tmp_path / "images")
