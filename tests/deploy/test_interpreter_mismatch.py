"""An image whose dependencies were installed for another Python than the interpreter it
carries is refused at deploy, naming both versions, before anything is recorded or
started."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.errors import ConveyorError
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.interpreter import LABEL_DEPS_PYTHON, LABEL_PYTHON, check_interpreter
from conveyor.supply.oci.layout import LayoutStore
from deploy.apps import make_project
from python_base import python_base


def test_a_deploy_refuses_deps_built_for_another_python(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    source = tmp_path / "src"
    (source / "app").mkdir(parents=True)
    (source / "app" / "__main__.py").write_text("print('never started')\n")
    store = LayoutStore(project.state_dir / "images")
    # What build-image writes when its `python` (which ran pip) is a 3.12.
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(store),
        entrypoint=("python", "-m", "app"),
        labels={LABEL_DEPS_PYTHON: "3.12"},
    )
    digest = build_image(spec, store, "app", ("1",)).manifest_digest

    deployed = run_cli(["deploy", "staging", f"app@{digest}"], project.directory)
    history = run_cli(["env", "history", "staging", "-o", "json"], project.directory)

    assert deployed.exit_code == 2  # a user error (docs/cli.md#exit-codes)
    [line] = [text for text in deployed.stderr.splitlines() if "cannot run" in text]
    assert "installed for Python 3.12" in line and "interpreter is Python 3.11" in line
    assert LABEL_DEPS_PYTHON in line and LABEL_PYTHON in line
    assert "Traceback" not in deployed.stderr + deployed.stdout
    assert digest not in history.stdout  # no deploy was recorded
    runtime_root = project.state_dir / "runtime"
    assert not any(runtime_root.rglob("release.json"))  # no replica was planned or started


@pytest.mark.parametrize(
    ("labels", "refused"),
    [
        ({LABEL_PYTHON: "3.11", LABEL_DEPS_PYTHON: "3.11"}, False),
        ({LABEL_PYTHON: "3.11", LABEL_DEPS_PYTHON: "3.12"}, True),
        ({LABEL_PYTHON: "3.11"}, False),  # no dependency layer
        ({LABEL_DEPS_PYTHON: "3.12"}, False),  # a base that does not say: not checked
    ],
)
def test_check_interpreter(labels: dict[str, str], refused: bool) -> None:
    if refused:
        with pytest.raises(ConveyorError, match=r"Python 3\.12 .* Python 3\.11"):
            check_interpreter(labels, "app@sha256:ab")
    else:
        check_interpreter(labels, "app@sha256:ab")
