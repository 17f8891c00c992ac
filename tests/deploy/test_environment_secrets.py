"""An environment's secrets reach its replicas and nothing else (issue 12): not a smoke
command's recorded output, not `env history`, not conveyor.db, not release.json (which is
0600 and names them only), not podman's command line."""

from __future__ import annotations

import shutil
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import run_cli
from conveyor.deploy.model import HealthCheck, ReleaseSpec, ReplicaState
from conveyor.deploy.runtimes.podman import PodmanRuntime, replica_arguments
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.service import environments as envs
from conveyor.service.project import Project
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore
from deploy.apps import build_app, free_port, project_with_spec
from deploy.test_podman_runtime import BUSYBOX, podman_in
from leaks import files_holding, holding
from python_base import python_base

SECRET = "shop_Z1xC3vB5nM7kJ9hG2fD4sA"
FAST = HealthCheck(interval=0.1, timeout=1.0, failure_threshold=3)


def secret_release(release_id: str, digest: str) -> ReleaseSpec:
    return ReleaseSpec(
        release_id,
        "shop",
        digest,
        (free_port(),),
        env={"GREETING": "hello", "SHOP_TOKEN": SECRET},
        readiness=FAST,
        liveness=FAST,
        secrets=("SHOP_TOKEN",),
    )


def get(address: str, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        return str(response.read().decode())


def processes_showing(secret: str) -> list[str]:
    """The command lines (what `ps` shows every user) that hold the secret."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes()
        except OSError:
            continue  # gone meanwhile
        if secret.encode() in argv:
            found.append(argv.replace(b"\0", b" ").decode(errors="replace"))
    return found


# --- the process runtime -----------------------------------------------------------------

ECHO_SERVER = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('GREETING')} {os.environ.get('SHOP_TOKEN')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def process_runtime(tmp_path: Path) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(tmp_path / "runtime", LayoutStore(tmp_path / "images"))
    try:
        yield runtime
    finally:
        for release_id in runtime.releases():
            runtime.stop(release_id)


@pytest.mark.real
def test_the_process_runtime_gives_replicas_the_secret_but_never_writes_it(
    process_runtime: ProcessRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "app"
    (source / "lib" / "app").mkdir(parents=True)
    (source / "lib" / "app" / "__main__.py").write_text(ECHO_SERVER)
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(process_runtime.store),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/lib"},
    )
    digest = build_image(spec, process_runtime.store, "shop", ("1",)).manifest_digest
    release = secret_release("staging-shop-1", digest)

    process_runtime.start(release)
    [replica] = process_runtime.wait_ready(release.release_id, timeout=15)

    assert replica.state is ReplicaState.READY
    assert get(replica.address) == f"hello {SECRET}"  # the replica has it
    plan = process_runtime.runs / release.release_id / "release.json"
    assert stat.S_IMODE(plan.stat().st_mode) == 0o600
    assert '"SHOP_TOKEN"' in plan.read_text()  # named, so the supervisor passes it on
    assert files_holding(SECRET, process_runtime.state_dir) == []
    assert processes_showing(SECRET) == []


# --- the podman runtime --------------------------------------------------------------------


def test_podman_gets_a_secret_by_name_only_never_its_value_on_the_command_line() -> None:
    release = secret_release("staging-shop-1", "sha256:" + "ab" * 32)

    argv = replica_arguments(release, 0, "image-id")

    assert "--env=SHOP_TOKEN" in argv
    assert "--env=GREETING=hello" in argv
    assert holding(SECRET, " ".join(argv)) == []


@pytest.fixture
def podman_runtime(tmp_path: Path) -> Iterator[PodmanRuntime]:
    with podman_in(tmp_path) as podman:
        yield podman


@pytest.mark.real
def test_a_podman_replica_gets_the_secret_and_no_process_shows_it(
    podman_runtime: PodmanRuntime, tmp_path: Path
) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "www").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "www" / "healthz").write_text("ok")
    # The root is read-only: the page is written to the container's tmpfs /tmp.
    serve = (
        '/bin/busybox cp /www/healthz /tmp/ && echo "$SHOP_TOKEN" > /tmp/token && '
        "exec /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /tmp"
    )
    entrypoint = ("/bin/busybox", "sh", "-c", serve)
    spec = ImageSpec(app=AppFiles(root), workdir="/", entrypoint=entrypoint, revision="cd" * 20)
    digest = build_image(spec, podman_runtime.store, "shop", ("1",)).manifest_digest
    release = secret_release("staging-shop-1", digest)

    podman_runtime.start(release)
    [replica] = podman_runtime.wait_ready(release.release_id, timeout=15)

    assert get(replica.address, "/token").strip() == SECRET
    assert processes_showing(SECRET) == []


# --- a deploy whose smoke command prints the secret ------------------------------------

SMOKE_SPEC = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  staging:
    secrets: [SHOP_TOKEN]
    env: {GREETING: hello}
    health:
      readiness: {path: /healthz, interval: 100ms}
      ready_timeout: 10s
    drain: 0.2s
    smoke:
      - name: leaky check
        command: |
          echo "token is $SHOP_TOKEN"
          printf '%s' "$SHOP_TOKEN" | cut -c1-12
          printf '%s' "$SHOP_TOKEN" | cut -c13-
          printf 'user:%s%s%s%s' "$SHOP_TOKEN" "$SHOP_TOKEN" "$SHOP_TOKEN" "$SHOP_TOKEN" | base64
          exit 1
"""


@pytest.fixture
def smoke_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.setenv("SHOP_TOKEN", SECRET)
    project = project_with_spec(tmp_path / "project", SMOKE_SPEC)
    try:
        yield project
    finally:
        with project.open_store() as store:
            envs.stop_environment(project, store, "staging")


@pytest.mark.real
def test_a_failing_smoke_command_echoing_an_environment_secret_leaks_it_nowhere(
    smoke_project: Project, tmp_path: Path
) -> None:
    image = build_app(smoke_project, tmp_path, "v1")

    deployed = run_cli(["deploy", "staging", image], smoke_project.directory)
    history = run_cli(["env", "history", "staging", "-o", "json"], smoke_project.directory)

    assert deployed.exit_code == 1
    shown = deployed.stdout + deployed.stderr
    assert "leaky check" in shown and "token is ***" in shown
    assert history.exit_code == 0, history.stderr
    assert holding(SECRET, shown, history.stdout) == []
    assert files_holding(SECRET, smoke_project.state_dir) == []  # conveyor.db, release.json
    [plan] = smoke_project.state_dir.rglob("release.json")
    assert stat.S_IMODE(plan.stat().st_mode) == 0o600
    assert stat.S_IMODE(plan.parent.stat().st_mode) == 0o700  # the release's folder too


@pytest.mark.real
def test_a_replica_that_dies_saying_the_secret_does_not_get_it_shown_or_stored(
    smoke_project: Project, tmp_path: Path
) -> None:
    source = tmp_path / "dying"
    (source / "lib" / "app").mkdir(parents=True)
    main = 'import os, sys\nsys.exit("cannot start with token " + os.environ["SHOP_TOKEN"])\n'
    (source / "lib" / "app" / "__main__.py").write_text(main)
    store = LayoutStore(smoke_project.state_dir / "images")
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(store),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/lib"},
    )
    image = f"app@{build_image(spec, store, 'app', ('dying',)).manifest_digest}"

    deployed = run_cli(["deploy", "staging", image], smoke_project.directory)

    shown = deployed.stdout + deployed.stderr
    assert deployed.exit_code == 1
    assert "cannot start with token ***" in shown
    assert holding(SECRET, shown) == [], shown
    # The replica's own log is the application's output, kept as it wrote it.
    logs = {path.name for path in smoke_project.state_dir.rglob("*") if path.is_file()}
    leaks = [p for p in files_holding(SECRET, smoke_project.state_dir) if "replica-" not in p]
    assert "conveyor.db" in logs
    assert leaks == []


# --- one secret name, a value per environment ------------------------------------------

STAGING_VALUE = "Q8wE6rT4yU2iO0pL_stg"
PRODUCTION_VALUE = "M3nB5vC7xZ9aS1dF_prd"

SCOPED_SPEC = """\
version: 1
jobs:
  noop: {{run: 'true'}}
environments:
  staging:
    port: {staging}
    secrets: [SHOP_TOKEN]
    env: {{GREETING: hello}}
    health:
      readiness: {{path: /, interval: 100ms}}
      ready_timeout: 15s
    smoke:
      - name: talkative check
        command: echo "token is $SHOP_TOKEN"
  production:
    port: {production}
    secrets: [SHOP_TOKEN]
    env: {{GREETING: hello}}
    health:
      readiness: {{path: /, interval: 100ms}}
      ready_timeout: 15s
"""


@pytest.fixture
def scoped_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.delenv("SHOP_TOKEN", raising=False)
    monkeypatch.setenv("CONVEYOR_SECRET_PRODUCTION_SHOP_TOKEN", PRODUCTION_VALUE)
    spec = SCOPED_SPEC.format(staging=free_port(), production=free_port())
    project = project_with_spec(tmp_path / "project", spec)
    staging_file = project.directory / ".conveyor" / "secrets" / "staging.env"
    staging_file.parent.mkdir()
    staging_file.write_text(f"SHOP_TOKEN={STAGING_VALUE}\n")
    staging_file.chmod(0o600)
    try:
        yield project
    finally:
        with project.open_store() as store:
            for name in ("staging", "production"):
                envs.stop_environment(project, store, name)


def echo_image(project: Project, tmp_path: Path) -> str:
    """The echo server, built into the project's image store: `app@sha256:...`."""
    source = tmp_path / "app"
    (source / "lib" / "app").mkdir(parents=True)
    (source / "lib" / "app" / "__main__.py").write_text(ECHO_SERVER)
    store = LayoutStore(project.state_dir / "images")
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(store),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/lib"},
    )
    return f"app@{build_image(spec, store, 'app', ('1',)).manifest_digest}"


@pytest.mark.real
def test_staging_and_production_serve_their_own_value_and_neither_is_written(
    scoped_project: Project, tmp_path: Path
) -> None:
    image = echo_image(scoped_project, tmp_path)

    shown = ""
    for name in ("staging", "production"):
        deployed = run_cli(["deploy", name, image, "-o", "json"], scoped_project.directory)
        assert deployed.exit_code == 0, deployed.stderr
        history = run_cli(["env", "history", name, "-o", "json"], scoped_project.directory)
        shown += deployed.stdout + deployed.stderr + history.stdout
    spec_of = envs.environments_of(scoped_project)

    assert get(f"127.0.0.1:{spec_of['staging'].port}") == f"hello {STAGING_VALUE}"
    assert get(f"127.0.0.1:{spec_of['production'].port}") == f"hello {PRODUCTION_VALUE}"
    for value in (STAGING_VALUE, PRODUCTION_VALUE):
        assert holding(value, shown) == [], shown
        written = files_holding(value, scoped_project.state_dir)
        assert written == (["secrets/staging.env"] if value == STAGING_VALUE else [])


def test_a_secret_missing_for_one_environment_is_one_clear_error(
    scoped_project: Project, tmp_path: Path
) -> None:
    (scoped_project.directory / ".conveyor" / "secrets" / "staging.env").unlink()
    image = echo_image(scoped_project, tmp_path)

    deployed = run_cli(["deploy", "staging", image], scoped_project.directory)

    assert deployed.exit_code != 0
    assert "Traceback" not in deployed.stderr
    line = next(line for line in deployed.stderr.splitlines() if "SHOP_TOKEN" in line)
    assert "secret 'SHOP_TOKEN' for environment 'staging' is not set" in line
    assert "CONVEYOR_SECRET_STAGING_SHOP_TOKEN" in line
    assert PRODUCTION_VALUE not in deployed.stderr
