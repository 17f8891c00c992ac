"""The `build-image` step on fixture workspaces, with the real pip installing a local wheel."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import re
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
from conveyor.supply.imagescan import image_packages
from conveyor.supply.oci import debian_base, model
from conveyor.supply.oci.build import DEPS_DIR
from conveyor.supply.oci.dependencies import CLOSURE_FILE
from conveyor.supply.oci.layout import LayoutStore
from steps.conftest import JOB_ID, Lines, context, tools_env, write_files

SHA = "c0ffee" * 6 + "0000"
NEXT_SHA = "beef" * 10


def tiny_wheel(directory: Path, name: str = "tiny", requires: tuple[str, ...] = ()) -> str:
    """A pure-Python wheel pip installs offline (no index), with the given dependencies."""
    filename = f"{name}-1.0-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    metadata += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    with zipfile.ZipFile(directory / filename, "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", "VALUE = 1\n")
        wheel.writestr(f"{name}-1.0.dist-info/METADATA", metadata)
        wheel.writestr(
            f"{name}-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        wheel.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return filename


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
        ("tiny>=1.0\n", "requirements.txt does not pin tiny (pip resolved it"),
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


def deps_layer_names(store_dir: Path, sha: str = SHA) -> list[str]:
    store = LayoutStore(store_dir)
    manifest = model.Manifest.from_bytes(store.get_manifest("shop", sha)[0])
    deps = gzip.decompress(store.get_blob("shop", manifest.layers[0].digest))
    with tarfile.open(fileobj=io.BytesIO(deps)) as tar:
        return tar.getnames()


def closure_in_image(store_dir: Path) -> list[str]:
    store = LayoutStore(store_dir)
    manifest = model.Manifest.from_bytes(store.get_manifest("shop", SHA)[0])
    deps = gzip.decompress(store.get_blob("shop", manifest.layers[0].digest))
    with tarfile.open(fileobj=io.BytesIO(deps)) as tar:
        member = tar.extractfile(f"{DEPS_DIR.lstrip('/')}/{CLOSURE_FILE}")
        assert member is not None
        return [line for line in member.read().decode().splitlines() if "#" not in line]


@pytest.fixture
def with_dependency(workspace: Path) -> Path:
    """tiny 1.0 requires tinydep, both wheels in the workspace (the local index)."""
    tiny_wheel(workspace, "tiny", requires=("tinydep>=1.0",))
    tiny_wheel(workspace, "tinydep")
    return workspace


def test_pinned_requirements_get_their_dependencies_too(
    with_dependency: Path, tmp_path: Path
) -> None:
    (with_dependency / "requirements.txt").write_text("tiny==1.0\n")
    params = {
        "base": "scratch",
        "repository": "shop",
        "requirements": "requirements.txt",
        "app": ["app/**"],
    }
    env = job_env(tmp_path / "images", PIP_FIND_LINKS=str(with_dependency))

    ran, _, log, _ = run_both(params, with_dependency, env)

    assert ran is not None and ran.ok, log.text
    assert "app/deps/tinydep/__init__.py" in deps_layer_names(tmp_path / "images")
    assert closure_in_image(tmp_path / "images") == ["tiny==1.0", "tinydep==1.0"]
    [warning] = [line for _, line in log.lines if "warning" in line]
    assert "requirements.txt does not pin tinydep (pip resolved it" in warning


def test_two_cold_builds_of_the_same_closure_give_the_same_image(
    with_dependency: Path, tmp_path: Path
) -> None:
    (with_dependency / "requirements.txt").write_text("tiny==1.0\n")
    params = {
        "base": "scratch",
        "repository": "shop",
        "requirements": "requirements.txt",
        "app": ["app/**"],
    }
    digests = []
    for store in ("a", "b"):  # two stores: two dependency caches, pip runs twice
        env = job_env(tmp_path / store, PIP_FIND_LINKS=str(with_dependency))
        ran, _, log, _ = run_both(params, with_dependency, env)
        assert ran is not None and ran.ok, log.text
        assert "Successfully installed tiny-1.0 tinydep-1.0" in log.text
        digests.append(LayoutStore(tmp_path / store).resolve("shop", SHA))

    assert digests[0] == digests[1]


def test_a_hashed_lock_that_misses_a_dependency_fails_naming_it(
    with_dependency: Path, tmp_path: Path
) -> None:
    wheel = with_dependency / "tiny-1.0-py3-none-any.whl"
    hashed_lock(with_dependency, hashlib.sha256(wheel.read_bytes()).hexdigest())
    params = {"repository": "shop", "requirements": "requirements.txt", "app": ["app/**"]}
    env = job_env(tmp_path / "images", PIP_FIND_LINKS=str(with_dependency))

    with pytest.raises(ConveyorError) as raised:
        run_both(params, with_dependency, env)

    assert raised.value.message == (
        "requirements.txt is a hashed lock but does not name tinydep (needed by tiny==1.0): "
        "with hashes pip installs only what the lock names"
    )
    assert raised.value.hint is not None and "--generate-hashes" in raised.value.hint
    assert LayoutStore(tmp_path / "images").tags("shop") == []  # nothing half-written


PYPROJECT = """[project]
name = "notes"
version = "0.1"
dependencies = ["tiny>=1.0"]
[project.optional-dependencies]
extra = ["tinydep==1.0"]
all = ["notes[extra]"]
"""


@pytest.mark.parametrize(
    ("extras", "closure"),
    [
        ([], ["tiny==1.0"]),
        (["all"], ["tiny==1.0", "tinydep==1.0"]),
    ],
)
def test_a_project_with_only_pyproject_gets_its_dependencies(
    workspace: Path, tmp_path: Path, extras: list[str], closure: list[str]
) -> None:
    tiny_wheel(workspace, "tinydep")
    (workspace / "requirements.txt").unlink()
    (workspace / "pyproject.toml").write_text(PYPROJECT)
    params = {"base": "scratch", "repository": "shop", "app": ["app/**"], "extras": extras}
    env = job_env(tmp_path / "images", PIP_FIND_LINKS=str(workspace))

    ran, _, log, _ = run_both(params, workspace, env)

    assert ran is not None and ran.ok, log.text
    assert closure_in_image(tmp_path / "images") == closure
    assert "build-image: warning: pyproject.toml does not pin tiny" in log.text


@pytest.mark.parametrize(
    ("pyproject", "params", "message"),
    [
        ('[project]\nname = "x"\ndynamic = ["dependencies"]\n', {}, "dynamic"),
        ('[project]\nname = "x"\ndependencies = ["tiny"]\n', {"extras": ["db"]}, "no extra"),
        ('[project\nname = "x"\n', {}, "pyproject.toml is not valid TOML"),
        ('[project]\ndependencies = ["not a requirement!"]\n', {}, "is not a requirement"),
        ("[tool.x]\ny = 1\n", {"dependencies": "pyproject"}, "no [project] dependencies"),
        (None, {"extras": ["db"]}, "pyproject.toml, which is not in the workspace"),
    ],
)
def test_a_pyproject_that_cannot_be_read_is_one_clear_error(
    workspace: Path, tmp_path: Path, pyproject: str | None, params: dict[str, Any], message: str
) -> None:
    if pyproject is not None:
        (workspace / "pyproject.toml").write_text(pyproject)
    env = job_env(tmp_path / "images")

    with pytest.raises(ConveyorError, match=re.escape(message)):
        run_both({"repository": "shop", "app": ["app/**"], **params}, workspace, env)


def test_without_requirements_or_pyproject_the_image_has_no_dependencies(
    workspace: Path, tmp_path: Path
) -> None:
    (workspace / "pyproject.toml").write_text("[tool.ruff]\nline-length = 99\n")
    ran, _, log, _ = run_both(
        {"base": "scratch", "repository": "shop", "app": ["app/**"]},
        workspace,
        job_env(tmp_path / "images"),
    )

    assert ran is not None and ran.ok, log.text
    record = json.loads((workspace / f".conveyor-out/{JOB_ID}/image.json").read_text())
    assert len(record["layers"]) == 1 and record["dependencies"] is None


def test_dependencies_none_ignores_pyproject(workspace: Path, tmp_path: Path) -> None:
    (workspace / "pyproject.toml").write_text(PYPROJECT)
    params = {"base": "scratch", "repository": "shop", "app": ["app/**"], "dependencies": "none"}

    ran, _, log, _ = run_both(params, workspace, job_env(tmp_path / "images"))

    assert ran is not None and ran.ok, log.text
    assert "pip" not in log.text


def test_requests_pinned_alone_brings_its_whole_closure_into_the_image_and_the_scan(
    tmp_path: Path,
) -> None:
    """The issue's case: requests==2.19.0 alone used to give an image without urllib3,
    idna, chardet and certifi (pip ran with --no-deps). Downloads ~0.6 MB from PyPI."""
    workspace = write_files(tmp_path / "ws", {"app/main.py": "import requests\n"})
    (workspace / "requirements.txt").write_text("requests==2.19.0\n")
    params = {
        "base": "scratch",
        "repository": "shop",
        "requirements": "requirements.txt",
        "app": ["app/**"],
    }
    env = job_env(tmp_path / "images")
    del env["PIP_NO_INDEX"]

    ran, _, log, _ = run_both(params, workspace, env)

    assert ran is not None and ran.ok, log.text
    names = {p.name.lower() for p in image_packages(LayoutStore(tmp_path / "images"), "shop", SHA)}
    assert {"requests", "urllib3", "idna", "chardet", "certifi"} <= names
    closure = {line.partition("==")[0] for line in closure_in_image(tmp_path / "images")}
    assert closure == names
    [warning] = [line for _, line in log.lines if "warning" in line]
    assert "does not pin certifi, chardet, idna, urllib3" in warning


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
        {"repository": "shop", "requirements": "r.txt", "dependencies": "pyproject"},
        {"repository": "shop", "requirements": "r.txt", "extras": ["db"]},
        {"repository": "shop", "dependencies": "none", "extras": ["db"]},
        {"repository": "shop", "dependencies": "poetry"},
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
