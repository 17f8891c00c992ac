"""The release record of a deploy made by hand (no run): what is known, and the errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.errors import NotFoundError
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.service.release_record import release_record, to_markdown
from deploy.apps import build_app, make_project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = make_project(tmp_path / "p", replicas=1)
    yield made
    with made.open_store() as store:
        environments.stop_environment(made, store, "staging")


@pytest.mark.real
def test_a_hand_deploy_has_a_record_without_a_run(project: Project, tmp_path: Path) -> None:
    image = build_app(project, tmp_path, "v1")
    with project.open_store() as store:
        deployed = environments.deploy(project, store, "staging", image, actor="ops")
        record = release_record(project, store, "staging")
        head = store.audit_entries(last=1)[0].hash

    assert record["release"]["id"] == deployed.release_id
    assert record["release"]["image"] == image
    assert record["release"]["deployed_by"] == "ops"
    assert record["run"] is None
    assert record["commits"] == []
    assert record["approvals"] == []
    assert record["provenance"] == []  # built here, never signed
    assert record["audit_head"] == head
    markdown = to_markdown(record)
    assert markdown.startswith(f"# Release {deployed.release_id} to staging")
    assert "- none: no approval was required" in markdown


def test_an_environment_without_a_release_has_no_record(project: Project) -> None:
    with project.open_store() as store, pytest.raises(NotFoundError, match="no successful"):
        release_record(project, store, "staging")


@pytest.mark.real
def test_the_cli_writes_the_record_whole_and_refuses_an_unknown_release(
    project: Project, tmp_path: Path
) -> None:
    image = build_app(project, tmp_path, "v1")
    with project.open_store() as store:
        environments.deploy(project, store, "staging", image, actor="ops")
    target = tmp_path / "record.json"

    written = run_cli(
        ["release", "record", "staging", "--format", "json", "--output", str(target)],
        project.directory,
    )
    unknown = run_cli(["release", "record", "staging", "staging-nope"], project.directory)

    assert written.exit_code == 0, written.stderr
    assert json.loads(target.read_text())["release"]["image"] == image
    assert not target.with_name("record.json.partial").exists()
    assert unknown.exit_code != 0
    assert "staging has no release staging-nope" in unknown.stderr
