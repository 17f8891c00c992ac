"""The reproducible builder: same inputs, same manifest digest, byte for byte.

pip is replaced by a recording runner that writes a package into `--target` (the real
pip runs in tests/steps/test_build_image.py); everything else is real.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import ConveyorError
from conveyor.supply.oci import model
from conveyor.supply.oci.build import (
    DEPS_DIR,
    AppFiles,
    BaseImage,
    BuiltImage,
    Dependencies,
    DependencyCache,
    ImageSpec,
    build_image,
    host_architecture,
)
from conveyor.supply.oci.dependencies import CLOSURE_FILE, DependencyReport
from conveyor.supply.oci.interpreter import LABEL_DEPS_PYTHON
from conveyor.supply.oci.layers import LayerEntry, build_layer
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.requirements import LOCK_HINT, Pinning, exact_pins, pinning_of
from supply.memory_store import MemoryStore

EPOCH = 1_700_000_000
SHA = "3f2a" * 10
APP = {"app/main.py": "print('shop')\n", "app/__init__.py": "", "README.md": "# shop\n"}


class FakePip:
    """Records pip's argv and installs one module whose content follows the requirements."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.calls.append(argv)
        target = Path(argv[argv.index("--target") + 1])
        requirements = Path(argv[argv.index("-r") + 1]).read_text()
        (target / "tiny").mkdir(parents=True)
        (target / "tiny" / "__init__.py").write_text(f"# {requirements.strip()}\n")
        for name in ("tiny", "Tiny_Dep"):
            (target / f"{name}-1.0.dist-info").mkdir()
            metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
            (target / f"{name}-1.0.dist-info" / "METADATA").write_text(metadata)


def project(root: Path, files: Mapping[str, str] = APP, mtime: int = 1) -> Path:
    for name, content in {**files, "requirements.txt": "tiny==1.0\n"}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        os.utime(path, (mtime, mtime))
    return root


def spec_for(root: Path, **overrides: Any) -> ImageSpec:
    fields: dict[str, Any] = {
        "app": AppFiles(root, ("app/**",)),
        "dependencies": Dependencies(root / "requirements.txt", "/usr/bin/python3"),
        "entrypoint": ("python", "-m", "app"),
        "revision": SHA,
        "source": "https://example.org/shop.git",
        "source_date_epoch": EPOCH,
        **overrides,
    }
    return ImageSpec(**fields)


def build(root: Path, store_dir: Path, **overrides: Any) -> BuiltImage:
    return build_image(
        spec_for(root, **overrides), LayoutStore(store_dir), "shop", (SHA,), run=FakePip()
    )


def config_of(store: LayoutStore, built: BuiltImage) -> dict[str, Any]:
    return dict(json.loads(store.get_blob("shop", built.config_digest)))


def test_the_same_files_in_two_folders_give_the_same_manifest_byte_for_byte(
    tmp_path: Path,
) -> None:
    first = build(project(tmp_path / "a", mtime=1), tmp_path / "store-a")
    second = build(project(tmp_path / "b", mtime=2_000_000_000), tmp_path / "store-b")

    assert first.manifest_digest == second.manifest_digest
    assert first.manifest == second.manifest
    assert first.manifest_digest == model.digest_of(first.manifest)


def test_a_changed_source_file_changes_only_the_application_layer(tmp_path: Path) -> None:
    store = tmp_path / "store"
    base = _base_image(LayoutStore(store))
    before = build(project(tmp_path / "a"), store, base=base)
    changed = {**APP, "app/main.py": "print('shop v2')\n"}
    after = build(project(tmp_path / "b", changed), store, base=base)

    assert [d.digest for d in before.layers[:-1]] == [d.digest for d in after.layers[:-1]]
    assert before.layers[-1].digest != after.layers[-1].digest
    assert len(before.layers) == 3  # base, dependencies, application
    assert before.manifest_digest != after.manifest_digest


def test_the_config_describes_the_layers_and_the_process(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    built = build_image(
        spec_for(
            project(tmp_path / "p"),
            env={"MODE": "prod"},
            port=8000,
            user="1000",
            labels={"team": "shop"},
            cmd=("--port", "8000"),
        ),
        store,
        "shop",
        (SHA,),
        run=FakePip(),
    )

    config = config_of(store, built)

    tars = [gzip.decompress(store.get_blob("shop", d.digest)) for d in built.layers]
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest() for tar in tars],
    }
    assert (config["os"], config["architecture"]) == ("linux", host_architecture())
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["config"] == {
        "Env": [f"PYTHONPATH={DEPS_DIR}", "MODE=prod"],
        "Entrypoint": ["python", "-m", "app"],
        "Cmd": ["--port", "8000"],
        "WorkingDir": "/app",
        "ExposedPorts": {"8000/tcp": {}},
        "User": "1000",
        # The builder adds the Python of the interpreter that installs (Debian 12's 3.11).
        "Labels": {"team": "shop", LABEL_DEPS_PYTHON: "3.11"},
    }
    assert [h["created"] for h in config["history"]] == [config["created"]] * 2
    assert "pip install -r requirements.txt" in config["history"][0]["created_by"]


def test_the_manifest_is_annotated_with_revision_source_created_and_version(
    tmp_path: Path,
) -> None:
    built = build(project(tmp_path / "p"), tmp_path / "store", version="1.4.0")

    annotations = model.Manifest.from_bytes(built.manifest).annotations

    assert annotations == {
        model.ANNOTATION_REVISION: SHA,
        model.ANNOTATION_SOURCE: "https://example.org/shop.git",
        model.ANNOTATION_CREATED: "2023-11-14T22:13:20Z",
        model.ANNOTATION_VERSION: "1.4.0",
    }


def test_an_image_on_a_base_keeps_its_layers_history_and_settings(tmp_path: Path) -> None:
    store = MemoryStore()  # one blob space per repository: the base's blobs are copied
    base = _base_image(store)
    base_digest = store.resolve("base", "1")

    built = build_image(
        spec_for(project(tmp_path / "p"), base=base, dependencies=None),
        store,
        "shop",
        (SHA,),
        run=FakePip(),
    )

    base_manifest = model.Manifest.from_bytes(store.get_manifest("base", "1")[0])
    assert built.layers[0] == base_manifest.layers[0]
    assert store.has_blob("shop", base_manifest.layers[0].digest)
    config = json.loads(store.get_blob("shop", built.config_digest))
    assert config["config"]["Env"] == ["PATH=/usr/bin"]
    assert config["history"][0] == {"created_by": "base layer"}
    assert len(config["history"]) == 2  # the base's, then the application's
    annotations = model.Manifest.from_bytes(built.manifest).annotations
    assert annotations[model.ANNOTATION_BASE_DIGEST] == base_digest == built.base_digest


def test_a_warm_build_does_not_run_pip_and_gives_the_same_image(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    store = LayoutStore(tmp_path / "store")
    cache = DependencyCache(tmp_path / "store" / ".conveyor-cache" / "deps")
    deps = Dependencies(root / "requirements.txt", "/usr/bin/python3", cache)
    cold_pip, warm_pip = FakePip(), FakePip()

    cold = build_image(spec_for(root, dependencies=deps), store, "shop", (SHA,), run=cold_pip)
    warm = build_image(spec_for(root, dependencies=deps), store, "shop", (SHA,), run=warm_pip)

    assert (len(cold_pip.calls), len(warm_pip.calls)) == (1, 0)
    assert warm.manifest == cold.manifest


def test_changed_requirements_miss_the_dependency_cache(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    store = LayoutStore(tmp_path / "store")
    deps = Dependencies(root / "requirements.txt", "/usr/bin/python3", DependencyCache(tmp_path))
    first = build_image(spec_for(root, dependencies=deps), store, "shop", (SHA,), run=FakePip())
    (root / "requirements.txt").write_text("tiny==2.0\n")
    pip = FakePip()

    second = build_image(spec_for(root, dependencies=deps), store, "shop", (SHA,), run=pip)

    assert len(pip.calls) == 1
    assert first.layers[0].digest != second.layers[0].digest


@pytest.mark.parametrize(
    ("requirements", "require_hashes"),
    [
        ("tiny==1.0 \\\n    --hash=sha256:00\nother===2 --hash=sha256:11\n", True),
        ("tiny==1.0 --hash=sha256:00\nother===2\n", False),
        ("tiny>=1.0\n", False),
    ],
)
def test_pip_always_resolves_the_closure_and_checks_hashes_of_a_lock(
    tmp_path: Path, requirements: str, require_hashes: bool
) -> None:
    root = project(tmp_path / "p")
    (root / "requirements.txt").write_text(requirements)
    pip = FakePip()

    build_image(spec_for(root), LayoutStore(tmp_path / "s"), "shop", (SHA,), run=pip)

    argv = pip.calls[0]
    assert argv[:4] == ["/usr/bin/python3", "-m", "pip", "install"]
    assert {"--no-compile", "--target", "-r"} <= set(argv)
    assert "--no-deps" not in argv
    assert ("--require-hashes" in argv) is require_hashes


def test_the_closure_is_written_into_the_layer_and_reported(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")
    built = build(project(tmp_path / "p"), tmp_path / "store")

    layer = gzip.decompress(store.get_blob("shop", built.layers[0].digest))
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.extractfile(f"{DEPS_DIR.lstrip('/')}/{CLOSURE_FILE}")
        assert member is not None
        lines = member.read().decode().splitlines()
    assert lines[1:] == ["tiny-dep==1.0", "tiny==1.0"]
    assert built.dependencies is not None
    assert built.dependencies.closure == ("tiny-dep==1.0", "tiny==1.0")
    assert built.dependencies.unpinned == ("tiny-dep",)  # requirements.txt pins only tiny
    assert built.to_json()["dependencies"] == ["tiny-dep==1.0", "tiny==1.0"]


def test_a_warm_build_reports_the_closure_the_cold_one_installed(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    store = LayoutStore(tmp_path / "store")
    deps = Dependencies(root / "requirements.txt", "/usr/bin/python3", DependencyCache(tmp_path))
    cold = build_image(spec_for(root, dependencies=deps), store, "shop", (SHA,), run=FakePip())
    warm = build_image(spec_for(root, dependencies=deps), store, "shop", (SHA,), run=FakePip())

    assert warm.dependencies == cold.dependencies
    assert warm.dependencies is not None and len(warm.dependencies.closure) == 2


def test_an_unlocked_file_resolved_against_another_index_misses_the_cache(
    tmp_path: Path,
) -> None:
    root = project(tmp_path / "p")
    store = LayoutStore(tmp_path / "store")
    cache = DependencyCache(tmp_path / "cache")
    here = Dependencies(root / "requirements.txt", "/usr/bin/python3", cache)
    there = Dependencies(
        root / "requirements.txt",
        "/usr/bin/python3",
        cache,
        index={"PIP_INDEX_URL": "https://mirror.example/simple"},
    )
    build_image(spec_for(root, dependencies=here), store, "shop", (SHA,), run=FakePip())
    pip = FakePip()

    build_image(spec_for(root, dependencies=there), store, "shop", (SHA,), run=pip)

    assert len(pip.calls) == 1


@pytest.mark.parametrize(
    ("text", "pinned"),
    [
        ("# lock\nfastapi==0.110.0  # web\nuvicorn==0.29.0 \\\n  --hash=sha256:ab\n", True),
        ("--index-url https://example.org/simple\nrequests==2.31.0\n", True),
        ("fastapi\n", False),
        ("fastapi==0.*\n", False),
        ("fastapi>=0.1,<1\n", False),
        ("-r base.txt\nfastapi==0.110.0\n", False),
        ("pkg @ https://example.org/pkg.whl\n", False),
        ("# nothing\n", False),
    ],
)
def test_a_fully_pinned_file_is_recognised(text: str, pinned: bool) -> None:
    assert (pinning_of(text) is not Pinning.UNPINNED) is pinned


@pytest.mark.parametrize(
    ("text", "pinning"),
    [
        (
            "# lock\na==1.0 \\\n    --hash=sha256:ab \\\n    --hash=sha256:cd\n    # via b\n",
            "hashed",
        ),
        ("--index-url https://example.org/simple\na==1.0 --hash=sha256:ab\n", "hashed"),
        ("a==1.0 --hash=sha256:ab\nb==2.0\n", "pinned"),
        ("a==1.0  # hash=sha256:ab in a comment is no hash\n", "pinned"),
        ("a==1.0 --hash=sha256:ab\nb>=2\n", "unpinned"),
        ("", "unpinned"),
    ],
)
def test_a_lock_is_a_file_whose_every_pin_has_hashes(text: str, pinning: str) -> None:
    assert pinning_of(text) is Pinning(pinning)


@pytest.mark.parametrize(
    ("text", "pins"),
    [
        ("a==1.0 --hash=sha256:ab\nB_c===2\nd>=1\ne\n", {"a", "b-c"}),
        ("--index-url https://example.org/simple\n-r base.txt\nf==1.*\n", set()),
    ],
)
def test_the_exact_pins_of_a_file_are_named(text: str, pins: set[str]) -> None:
    assert exact_pins(text) == pins


def test_only_a_hashed_lock_builds_without_a_warning() -> None:
    closure = ("a==1.0", "b==2.0")
    locked = DependencyReport("requirements.txt", Pinning.HASHED, closure, ())
    pinned = DependencyReport("requirements.txt", Pinning.PINNED, closure, ())
    partial = DependencyReport("pyproject.toml", Pinning.UNPINNED, closure, ("a", "b"))

    assert locked.warning() is None
    assert pinned.warning() == (
        "warning: requirements.txt pins every version but not every file's hash: the index "
        f"could serve other bytes; {LOCK_HINT}"
    )
    text = partial.warning()
    assert text is not None and text.startswith("warning: pyproject.toml does not pin a, b")
    assert "make lock" in text and "--generate-hashes" in text


def test_the_tag_latest_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    store = LayoutStore(tmp_path / "store")

    with pytest.raises(ConveyorError, match="latest"):
        build_image(spec_for(project(tmp_path / "p")), store, "shop", ("latest",), run=FakePip())

    assert store.repositories() == []


def test_globs_that_match_nothing_are_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError, match="no project file matches"):
        build(project(tmp_path / "p"), tmp_path / "s", app=AppFiles(tmp_path / "p", ("src/**",)))


def test_base_references_are_parsed() -> None:
    assert BaseImage.parse("base:1") == BaseImage("base", "1")
    assert BaseImage.parse("team/base@sha256:" + "a" * 64).reference == "sha256:" + "a" * 64
    with pytest.raises(ConveyorError, match="names no tag or digest"):
        BaseImage.parse("localhost:5000/base")


def _base_image(store: Any) -> BaseImage:
    """A one-layer base image `base:1` with a PATH and a history entry."""
    layer = build_layer([LayerEntry.of_bytes("bin/tool", b"#!/bin/sh\n", executable=True)], 1)
    store.put_blob("base", layer.data)
    config = model.canonical_json(
        {
            "architecture": host_architecture(),
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created_by": "base layer"}],
        }
    )
    store.put_blob("base", config)
    manifest = model.Manifest(model.Descriptor.of(model.CONFIG, config), (layer.descriptor(),))
    store.put_manifest("base", manifest.to_bytes(), model.MANIFEST, ("1",))
    return BaseImage("base", "1")
