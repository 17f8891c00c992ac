"""The image steps find what an upstream build-image job recorded, matrix ids included."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import StepContext, job_output_dir
from conveyor.steps.image_steps import built_image, scan_record_path


class _Discard:
    def write(self, stream: object, line: str) -> None:
        pass


def _context(workspace: Path, job_id: str) -> StepContext:
    return StepContext(
        job_id=job_id,
        workspace=workspace,
        env={},
        timeout=None,
        executor=LocalExecutor(),
        log=_Discard(),
    )


def test_a_matrix_build_job_is_found_by_its_id(tmp_path: Path) -> None:
    record = {"repository": "shop", "digest": "sha256:" + "a" * 64, "tags": ["abc"]}
    folder = job_output_dir(tmp_path, "image[python=3.11]")
    folder.mkdir(parents=True)
    (folder / "image.json").write_text(json.dumps(record))

    found = built_image(_context(tmp_path, "scan"), "image[python=3.11]")

    assert folder.name == "image_python=3.11_"
    assert found.name == "shop@sha256:" + "a" * 64
    assert scan_record_path(_context(tmp_path, "scan"), "scan[x=1]").parent.name == "scan_x=1_"
