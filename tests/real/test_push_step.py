"""A pipeline builds an image and its `push` job sends it to a real registry; a second
push of an unchanged image uploads nothing."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import MakeProject
from conveyor.service.images import image_store
from conveyor.states import JobState
from conveyor.supply.oci.registry import RegistryStore

SPEC = """\
version: 1
images:
  registry: {registry}
  insecure_registry: true
jobs:
  image:
    uses: build-image
    with:
      repository: app
      app: ["app/**"]
      entrypoint: [python, -m, app]
  push:
    needs: [image]
    uses: push
"""


@pytest.mark.real
def test_the_push_job_sends_the_image_to_the_registry(
    git_project: MakeProject, registry: str
) -> None:
    address = registry.removeprefix("http://")
    project = git_project(SPEC.format(registry=address), files={"app/__main__.py": "print(1)\n"})

    first = project.run()
    second = project.run()

    assert first.jobs == {"image": JobState.SUCCESS, "push": JobState.SUCCESS}
    # The push happens on every run, so it never claims to be cached.
    assert second.jobs == {"image": JobState.CACHED, "push": JobState.SUCCESS}
    pushed = project.jobs(second.run_id)["push"].detail or ""
    assert "0 blobs uploaded" in pushed, pushed
    local = image_store(project.project())
    digest = local.resolve("app", project.git("rev-parse", "HEAD").strip())
    with RegistryStore(address, insecure=True) as remote:
        assert remote.resolve("app", project.git("rev-parse", "HEAD").strip()) == digest
    inspected = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{address}/app@{digest}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(inspected.stdout)["Digest"] == digest
