"""Release hooks and the TCP readiness check with real processes (the process runtime
and the builtin router): a before-traffic hook runs once per release whatever the
replicas, its output is in the deploy's log, and a hook that fails or hangs fails the
deploy with the previous release serving everything. In memory: test_hooks_in_memory.py."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import run_cli, wait_until
from conveyor.service import environments
from conveyor.service.project import Project
from conveyor.states import DeployState, ReleaseState
from conveyor.store.store import Store
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore
from deploy.apps import project_with_spec, python_base

pytestmark = [pytest.mark.real, pytest.mark.timeout(90)]

# An app with no health page: every path answers 404 but `/`, which names its version.
SERVER = """\
import http.server, os

VERSION = {version!r}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status, body = (200, VERSION.encode()) if self.path == "/" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


address = (os.environ["HOST"], int(os.environ["PORT"]))
http.server.ThreadingHTTPServer(address, Handler).serve_forever()
"""
# The release hook, with its behaviour baked into the image as a migration's code is.
HOOK = """\
import os, subprocess, sys, time

BEHAVIOUR = {behaviour!r}
data = os.environ.get("DATA_DIR") or os.environ["CONVEYOR_DATA_DIR"]
release = os.environ["CONVEYOR_RELEASE"]
phase = os.environ["CONVEYOR_HOOK"]
if BEHAVIOUR == "fail":
    print("migrating", release, flush=True)
    sys.exit("no such table: notes")
if BEHAVIOUR == "hang" and phase == "before_traffic":
    # A child in the hook's process group: killed with it at the timeout.
    # Tagged on its command line: inside the sandbox's PID namespace its pid is not the host's.
    tag = "hook-child-" + release
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", tag])
    with open(os.path.join(data, "hang.pid"), "w") as out:
        out.write(tag)
    print("waiting for a lock that never comes", flush=True)
    time.sleep(600)
with open(os.path.join(data, "hooks.log"), "a") as log:
    log.write(f"{{phase}} {{release}}\\n")
print("migrated", release, "in", phase, flush=True)
"""
SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 3
    health:
      readiness: {interval: 100ms}
      liveness: {interval: 500ms}
      ready_timeout: 20s
    drain: 0.2s
    hooks:
      before_traffic:
        - name: migrate
          command: python -m app.hook
          timeout: 2s
      after_traffic:
        - {name: announce, command: [python, -m, app.hook]}
"""


@dataclass
class Staging:
    project: Project
    store: Store
    sources: Path
    said: list[str] = field(default_factory=list)

    def build(self, version: str, behaviour: str = "ok") -> str:
        source = self.sources / f"{version}-{behaviour}"
        (source / "lib" / "app").mkdir(parents=True)
        (source / "lib" / "app" / "__main__.py").write_text(SERVER.format(version=version))
        (source / "lib" / "app" / "hook.py").write_text(HOOK.format(behaviour=behaviour))
        store = LayoutStore(self.project.state_dir / "images")
        spec = ImageSpec(
            app=AppFiles(source),
            base=python_base(store),
            entrypoint=("python", "-m", "app"),
            env={"PYTHONPATH": "/app/lib"},
        )
        built = build_image(spec, store, "notes", (f"{version}-{behaviour}",))
        return f"notes@{built.manifest_digest}"

    def deploy(self, image: str) -> environments.DeployOutcome:
        return environments.deploy(
            self.project, self.store, "staging", image, actor="tester", progress=self.said.append
        )

    def answers(self, count: int = 10) -> set[str]:
        record = self.store.ledger.environments.get("staging")
        assert record is not None
        with httpx.Client(base_url=f"http://127.0.0.1:{record.port}", timeout=10.0) as client:
            return {client.get("/").text for _ in range(count)}

    def data_file(self, name: str) -> Path:
        """A file the hooks wrote in the environment's data folder."""
        found = [path for path in self.project.state_dir.rglob(name) if "data" in path.parts]
        assert len(found) == 1, found
        return found[0]

    def running(self) -> list[str]:
        control = environments.controller(self.project, self.store, "staging")
        return control.target.runtime.releases()


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Staging]:
    project = project_with_spec(tmp_path / "p", SPEC)
    with project.open_store() as store:
        opened = Staging(project, store, tmp_path / "sources")
        try:
            yield opened
        finally:
            environments.stop_environment(project, store, "staging")


def test_a_before_traffic_hook_runs_once_per_release_whatever_the_replicas(
    staging: Staging,
) -> None:
    first = staging.deploy(staging.build("v1"))
    assert first.state is DeployState.SUCCEEDED, first.reason
    second = staging.deploy(staging.build("v2"))
    assert second.state is DeployState.SUCCEEDED, second.reason
    assert staging.answers() == {"v2"}
    lines = staging.data_file("hooks.log").read_text().splitlines()
    assert lines == [
        f"before_traffic {first.release_id}",
        f"after_traffic {first.release_id}",
        f"before_traffic {second.release_id}",
        f"after_traffic {second.release_id}",
    ]  # three replicas each, one line per release and phase
    assert f"[migrate] migrated {second.release_id} in before_traffic" in staging.said
    assert f"[announce] migrated {second.release_id} in after_traffic" in staging.said


def test_a_failing_hook_fails_the_deploy_with_nothing_routed_to_the_new_release(
    staging: Staging,
) -> None:
    good = staging.deploy(staging.build("v1"))
    assert good.state is DeployState.SUCCEEDED, good.reason
    bad = staging.deploy(staging.build("v2", "fail"))
    assert bad.state is DeployState.FAILED
    assert bad.reason == "before_traffic hook 'migrate' exited with code 1: no such table: notes"
    assert f"[migrate] migrating {bad.release_id}" in staging.said
    assert_untouched(staging, good.release_id, bad.release_id)
    shown = run_cli(["release", "status", "staging"], staging.project.directory)
    assert shown.exit_code == 0, shown.stderr
    assert "hook before_traffic migrate: failed (exit 1, " in shown.stdout
    assert "hook after_traffic" not in shown.stdout  # never reached
    assert f"result: {bad.reason}" in shown.stdout


def test_a_hanging_hook_is_killed_at_its_timeout_with_its_children(staging: Staging) -> None:
    good = staging.deploy(staging.build("v1"))
    assert good.state is DeployState.SUCCEEDED, good.reason
    bad = staging.deploy(staging.build("v2", "hang"))
    assert bad.state is DeployState.FAILED
    assert bad.reason == (
        "before_traffic hook 'migrate' was killed at its timeout of 2 s: "
        "waiting for a lock that never comes"
    )
    tag = staging.data_file("hang.pid").read_text()
    wait_until(lambda: not tagged_processes(tag), "the hook's child to be killed with it", 10)
    assert_untouched(staging, good.release_id, bad.release_id)


def tagged_processes(tag: str) -> list[int]:
    """Host pids whose command line carries `tag`."""
    return [p.pid for p in psutil.process_iter(["cmdline"]) if tag in (p.info["cmdline"] or [])]


def assert_untouched(staging: Staging, good: str, bad: str) -> None:
    """The previous release serves everything; the new one never ran nor had traffic."""
    assert staging.answers() == {"v1"}
    record = staging.store.ledger.environments.get("staging")
    assert record is not None and record.live_release == good
    assert bad not in str(record.routes)
    assert staging.running() == [good]
    release = staging.store.ledger.releases.get(bad, "staging")
    assert release is not None and release.state is ReleaseState.FAILED


def test_an_app_without_a_health_page_gets_ready_by_tcp(tmp_path: Path) -> None:
    spec = textwrap.dedent(
        """\
        version: 1
        jobs:
          noop: {run: 'true'}
        environments:
          staging: {replicas: 2, drain: 0.2s, health: {readiness: {interval: 100ms}}}
        """
    )
    project = project_with_spec(tmp_path / "p", spec)
    with project.open_store() as store:
        staging = Staging(project, store, tmp_path / "sources")
        try:
            outcome = staging.deploy(staging.build("v1"))
            assert outcome.state is DeployState.SUCCEEDED, outcome.reason
            assert staging.answers() == {"v1"}
            record = store.ledger.environments.get("staging")
            assert record is not None
            assert httpx.get(f"http://127.0.0.1:{record.port}/healthz").status_code == 404
        finally:
            environments.stop_environment(project, store, "staging")
