"""`conveyor release status` says what the recorded progress says: paused while held,
and no longer once a promote moved the release on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from deploy.apps import project_with_spec

SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
"""


def status_with(tmp_path: Path, progress: dict[str, Any]) -> str:
    project = project_with_spec(tmp_path / "project", SPEC)
    with project.open_store() as store:
        deploy = store.ledger.deploys.begin(
            "staging",
            release_id="staging-app-abc",
            repository="app",
            digest="sha256:" + "ab" * 32,
            ports=[1],
            previous="staging-app-old",
            actor="ops",
            run_id=None,
        )
        store.ledger.deploys.set_progress(deploy.id, {"strategy": "canary", **progress})
    result = run_cli(["release", "status", "staging"], project.directory)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("progress", "shown", "hidden"),
    [
        (
            {"steps": 3, "step": 1, "weight": 20, "paused": True},
            "step 2/3, canary weight 20% paused",
            None,
        ),
        (
            {"steps": 3, "step": 2, "weight": 20, "paused": False},
            "step 3/3, canary weight 20%",
            "paused",
        ),
        (
            {"steps": 3, "step": 2, "weight": 100, "phase": "promoted", "paused": False},
            "step 3/3, canary weight 100%, promoted",
            "paused",
        ),
    ],
)
def test_release_status_shows_the_recorded_pause_and_phase(
    tmp_path: Path, progress: dict[str, Any], shown: str, hidden: str | None
) -> None:
    text = status_with(tmp_path, progress)

    assert shown in text
    assert hidden is None or hidden not in text
