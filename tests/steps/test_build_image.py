"""The `build-image` step on fixture workspaces, with the real pip installing a local wheel."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import NoEvidence
from conveyor.errors import ConveyorError
from conveyor.steps.build_image import BuildImageParams, BuildImageStep
from conveyor.supply.oci import debian_base, model
from conveyor.supply.oci.build import DEPS_DIR
from conveyor.supply.oci.layout import LayoutStore
from steps.conftest import JOB_ID, Lines, context, tools_env, write_files

SHA = "c0ffee" * 6 + "0000"
NEXT_SHA = "beef" * 10


def tiny_wheel(directory: Path) -> str:
    """A pure-Python wheel pip installs offline (no index, no dependencies)."""
    name = "tiny-1.0-py3-none-any.whl"
    with zipfile.ZipFile(directory / name, "w") as wheel:
        wheel.writestr("tiny/__init__.py", "VALUE = 1\n")
        wheel.writestr(
            "tiny-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tiny\nVersion: 1.0\n"
        )
        wheel.writestr(
            "tiny-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr("tiny-1.0.dist-info/RECORD", "")
    return name


def job_env(store: Path, sha: str = SHA, **extra: str) -> dict[str, str]:
    return {
        **tools_env(),
        "CONVEYOR_IMAGE_STORE": str(store),
        "CONVEYOR_COMMIT_SHA": sha,
        "SOURCE_DATE_EPOCH": "1700000000",
        "PIP_NO_INDEX": "1",  # the wheel is local: pip must not look anywhere else
        **extra,
    }


def run_both(
    params: dict[str, Any], workspace: Path, env: dict[str, str], *, cached: bool = False
) -> tuple[ExecResult | None, ExecResult, Lines, NoEvidence]:
    """`run` then `finalize` (or, `cached`, only `finalize` as after a cache hit)."""
    step = BuildImageStep()
    parsed = BuildImageParams.model_validate(params)
    evidence = NoEvidence()
    ctx, log = context(workspace, evidence=evidence, env=env)

    async def both() -> tuple[ExecResult | None, ExecResult]:
        ran = None if cached else await step.run(parsed, ctx)
        return ran, await step.finalize(parsed, ctx, ran)

    ran, final = asyncio.run(both())
    return ran, final, log, evidence


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = write_files(tmp_path / "ws", {"app/main.py": "print('hi')\n", "app/__init__.py": ""})
    (root / "requirements.txt").write_text(f"./{tiny_wheel(root)}\n")
    return root


def test_the_image_is_built_stored_tagged_and_described(workspace: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "images"
    params = {
        "repository": "shop",
        "requirements": "requirements.txt",
        "app": ["app/**"],
        "entrypoint": ["python", "-m", "app"],
        "version": "1.0.0",
    }

    ran, final, log, evidence = run_both(params, workspace, job_env(store_dir))

    assert ran is not None and ran.ok, log.text
    assert final.ok, final.detail
    record = json.loads((workspace / f".conveyor-out/{JOB_ID}/image.json").read_text())
    store = LayoutStore(store_dir)
    assert record["repository"] == "shop"
    assert record["tags"] == [SHA, "1.0.0"]
    assert store.resolve("shop", SHA) == store.resolve("shop", "1.0.0") == record["digest"]
    # Conveyor's Python base (its 2 layers), then the dependencies and the project files.
    assert len(record["layers"]) == 4
    assert record["base"]["name"].startswith(f"{debian_base.REPOSITORY}@sha256:")
    assert "build-image: on conveyor/python@sha256:" in log.text
    [(kind, content, summary)] = evidence.published
    assert (kind, json.loads(content), summary["digest"]) == ("image", record, record["digest"])
    assert "Successfully installed tiny-1.0" in log.text  # pip ran through the executor
    manifest = model.Manifest.from_bytes(store.get_manifest("shop", SHA)[0])
    assert manifest.annotations[model.ANNOTATION_REVISION] == SHA


def test_the_dependencies_layer_holds_the_installed_packages(
    workspace: Path, tmp_path: Path
) -> None:
    params = {"repository": "shop", "requirements": "requirements.txt", "app": ["app/**"]}
    run_both(params, workspace, job_env(tmp_path / "images"))

    store = LayoutStore(tmp_path / "images")
    manifest = model.Manifest.from_bytes(store.get_manifest("shop", SHA)[0])
    deps = gzip.decompress(store.get_blob("shop", manifest.layers[-2].digest))
    with tarfile.open(fileobj=io.BytesIO(deps)) as tar:
        names = tar.getnames()
    assert f"{DEPS_DIR.lstrip('/')}/tiny/__init__.py" in names
    assert not any(name.endswith(".pyc") for name in names)  # --no-compile


def hashed_lock(workspace: Path, digest: str) -> None:
    """requirements.txt as `uv pip compile --generate-hashes` writes it, for the tiny wheel."""
    (workspace / "requirements.txt").write_text(
        f"tiny==1.0 \\\n    --hash=sha256:{digest}\n    # via -r requirements.in\n"
    )


def test_a_hashed_lock_installs_its_files_with_hashes_checked_and_no_warning(
    workspace: Path, tmp_path: Path
) -> None:
    wheel = workspace / "tiny-1.0-py3-none-any.whl"
    hashed_lock(workspace, hashlib.sha256(wheel.read_bytes()).hexdigest())
    params = {"repository": "shop", "requirements": "requirements.txt", "app": ["app/**"]}
    env = job_env(tmp_path / "images", PIP_FIND_LINKS=str(workspace))

    ran, final, log, _ = run_both(params, workspace, env)

    assert ran is not None and ran.ok and final.ok, log.text
    assert "Successfully installed tiny-1.0" in log.text
    assert "warning" not in log.text


def test_a_file_that_does_not_match_its_hash_stops_the_build(
    workspace: Path, tmp_path: Path
) -> None:
    hashed_lock(workspace, "0" * 64)  # the index (here: a folder) serves other bytes
    params = {"repository": "shop", "requirements": "requirements.txt", "app": ["app/**"]}
    env = job_env(tmp_path / "images", PIP_FIND_LINKS=str(workspace))

    with pytest.raises(ConveyorError, match="DO NOT MATCH THE HASHES"):
        run_both(params, workspace, env)


@pytest.mark.parametrize(
    ("requirements", "expected"),
    [
        ("tiny>=1.0\n", "requirements.txt is not a lock"),
        ("tiny==1.0\n", "requirements.txt pins every version but not every file's hash"),
    ],
)
def test_requirements_that_are_not_a_hashed_lock_are_built_with_a_warning(
    workspace: Path, tmp_path: Path, requirements: str, expected: str
) -> None:
    (workspace / "requirements.txt").write_text(requirements)
    params = {"repository": "shop", "requirements": "requirements.txt", "app": ["app/**"]}
    env = job_env(tmp_path / "images", PIP_FIND_LINKS=str(workspace))

    ran, _, log, _ = run_both(params, workspace, env)

    assert ran is not None and ran.ok, log.text
    [warning] = [line for stream, line in log.lines if "warning" in line]
    assert warning.startswith(f"build-image: warning: {expected}")
    assert "--generate-hashes" in warning


def test_a_cache_hit_for_a_new_commit_tags_the_same_image_with_it(
    workspace: Path, tmp_path: Path
) -> None:
    store_dir = tmp_path / "images"
    run_both({"repository": "shop", "app": ["app/**"]}, workspace, job_env(store_dir))

    ran, final, _, evidence = run_both(
        {"repository": "shop", "app": ["app/**"]},
        workspace,
        job_env(store_dir, sha=NEXT_SHA),
        cached=True,
    )

    assert ran is None and final.ok
    store = LayoutStore(store_dir)
    assert store.resolve("shop", NEXT_SHA) == store.resolve("shop", SHA)
    assert json.loads(evidence.published[0][1])["tags"] == [SHA, NEXT_SHA]


def test_a_cache_hit_whose_image_left_the_store_fails_clearly(
    workspace: Path, tmp_path: Path
) -> None:
    run_both({"repository": "shop", "app": ["app/**"]}, workspace, job_env(tmp_path / "a"))

    _, final, _, _ = run_both(
        {"repository": "shop", "app": ["app/**"]}, workspace, job_env(tmp_path / "b"), cached=True
    )

    assert not final.ok
    assert "--no-cache" in final.detail


def test_without_the_image_store_the_step_says_what_is_missing(workspace: Path) -> None:
    env = job_env(Path("unused"))
    del env["CONVEYOR_IMAGE_STORE"]

    with pytest.raises(ConveyorError, match="CONVEYOR_IMAGE_STORE is not set"):
        run_both({"repository": "shop"}, workspace, env)


def test_containerfile_mode_without_podman_or_buildah_fails_clearly(
    workspace: Path, tmp_path: Path
) -> None:
    (workspace / "Containerfile").write_text("FROM scratch\n")
    (tmp_path / "empty-bin").mkdir()
    env = job_env(tmp_path / "images", PATH=str(tmp_path / "empty-bin"))

    with pytest.raises(ConveyorError, match="needs podman or buildah"):
        run_both({"repository": "shop", "mode": "containerfile"}, workspace, env)


@pytest.mark.parametrize(
    "params",
    [
        {"repository": "shop", "version": "latest"},
        {"repository": "Shop"},
        {"repository": "shop", "base": "no-tag"},
        {"repository": "shop", "requirements": "../outside.txt"},
        {"repository": "shop", "workdir": "app"},
        {"repository": "shop", "port": 70000},
        {"repository": "shop", "tags": ["x"]},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        BuildImageParams.model_validate(params)


def test_the_description_carries_every_parameter() -> None:
    params = BuildImageParams.model_validate({"repository": "shop", "env": {"MODE": "prod"}})

    described = BuildImageStep().describe(params)

    assert '"repository":"shop"' in described
    assert '"MODE":"prod"' in described
    assert BuildImageStep().outputs(params) == [".conveyor-out/*/image.json"]
