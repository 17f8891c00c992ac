"""Small real services built into OCI images, and projects that deploy them.

`build_app` builds an image whose entrypoint is a threaded HTTP/1.1 server answering
`GET /` with its version and `GET /healthz` with ok; `behaviour` plants a fault:
- "ok": healthy;
- "crash": exits at start (a release that must never receive traffic);
- "bad-smoke": healthy, but `/smoke` answers 500 (a smoke test catches it);
- "slow-start": listens only after APP_START_DELAY seconds (default 3): a deploy in flight;
- "faulty": answers 500 to a fifth of the requests for `/` (a regression to catch);
- "slow": answers `/` 200 ms late (a latency regression);
- "errors-R": answers 500 to a share R of the requests for `/` (e.g. "errors-0.1").
"""

from __future__ import annotations

import os
import socket
import textwrap
from pathlib import Path

from conveyor.service.project import Project
from conveyor.supply.oci.build import AppFiles, BaseImage, ImageSpec, build_image, host_architecture
from conveyor.supply.oci.debian_base import cache_root_of, ensure_python_base
from conveyor.supply.oci.layout import LayoutStore

REPOSITORY = "app"
SERVER = """\
import http.server, os, random, socket, sys, time

BEHAVIOUR = {behaviour!r}
VERSION = {version!r}
if BEHAVIOUR == "crash":
    sys.exit("boom: cannot start")
if BEHAVIOUR == "slow-start":
    time.sleep(float(os.environ.get("APP_START_DELAY", "3")))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out as two writes: without this, Nagle's algorithm holds
        # the body until the router's delayed ACK (40 ms per request).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        if self.path == "/healthz":
            self.answer(200, b"ok")
        elif self.path == "/smoke":
            self.answer(500 if BEHAVIOUR == "bad-smoke" else 200, b"smoke")
        elif self.path == "/":
            share = 0.2 if BEHAVIOUR == "faulty" else 0.0
            if BEHAVIOUR.startswith("errors-"):
                share = float(BEHAVIOUR.removeprefix("errors-"))
            if random.random() < share:
                self.answer(500, b"injected fault")
                return
            if BEHAVIOUR == "slow":
                time.sleep(0.2)
            self.answer(200, VERSION.encode())
        else:
            self.answer(404, b"not found")

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 stalls a burst of new connections


server = Server((os.environ["HOST"], int(os.environ["PORT"])), Handler)
server.serve_forever()
"""


def build_app(project: Project, root: Path, version: str, behaviour: str = "ok") -> str:
    """Build the app into the project's image store; returns `app@sha256:...`."""
    main = SERVER.format(version=version, behaviour=behaviour)
    return build_main(project, root / f"src-{version}-{behaviour}", main, f"{version}-{behaviour}")


def build_main(
    project: Project, source: Path, main: str, tag: str, repository: str = REPOSITORY
) -> str:
    """An image whose entrypoint runs `main` (a Python module's text) on Conveyor's Python
    base, built from `source` into the project's image store; returns
    `<repository>@sha256:...`."""
    (source / "lib" / "app").mkdir(parents=True)
    (source / "lib" / "app" / "__main__.py").write_text(main)
    store = LayoutStore(project.state_dir / "images")
    spec = ImageSpec(
        app=AppFiles(source),
        base=python_base(store),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/lib"},
    )
    built = build_image(spec, store, repository, (tag,))
    return f"{repository}@{built.manifest_digest}"


def python_base(store: LayoutStore) -> BaseImage:
    """Conveyor's Python base in `store`, from $CONVEYOR_BASE_CACHE (the suite shares one)
    or the store's own cache. Not tests/python_base.py's: the benchmarks import this module
    as `tests.deploy.apps`, without tests/ on sys.path."""
    cache = cache_root_of(store.root, os.environ)
    built = ensure_python_base(store, cache, host_architecture())
    return BaseImage(built.repository, built.digest)


ENVIRONMENTS = """\
environments:
  staging:
    replicas: {replicas}
    runtime: {runtime}
    router: {router}
    health:
      readiness: {{path: /healthz, interval: 100ms}}
      liveness: {{path: /healthz, interval: 500ms}}
      ready_timeout: {ready_timeout}
    drain: {drain}
    smoke:
      - http: /smoke
{strategy}  production:
    after: staging
    replicas: 1
    health:
      readiness: {{path: /healthz, interval: 100ms}}
    drain: 0.2s
"""


def make_project(
    directory: Path,
    *,
    replicas: int = 2,
    runtime: str = "process",
    router: str = "builtin",
    ready_timeout: str = "20s",
    drain: str = "0.2s",
    strategy: str = "",
) -> Project:
    """A project whose conveyor.yml declares staging and production (after staging).
    `strategy`: YAML of staging's `strategy:` value, indented by 6 spaces."""
    directory.mkdir(parents=True, exist_ok=True)
    environments = ENVIRONMENTS.format(
        replicas=replicas,
        runtime=runtime,
        router=router,
        ready_timeout=ready_timeout,
        drain=drain,
        strategy=f"    strategy:\n{strategy}" if strategy else "",
    )
    spec = "version: 1\njobs:\n  noop: {run: 'true'}\n" + environments
    return project_with_spec(directory, spec)


# The smallest deployable project: one job, staging with one replica, quick to drain.
ONE_REPLICA_STAGING = """\
version: 1
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
    drain: 10ms
    health:
      readiness: {path: /healthz, interval: 100ms}
"""


def project_with_spec(directory: Path, spec: str) -> Project:
    """A project in `directory` (made if missing) whose conveyor.yml is `spec`, dedented."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "conveyor.yml").write_text(textwrap.dedent(spec))
    project = Project.locate(directory / "conveyor.yml")
    project.ensure_state_dir()
    return project


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A pipeline that builds the app's image (app/__main__.py, `SERVER`) and deploys it to
# staging by a canary with a baseline: 30 %, a pause of `{pause}`, 60 %, a short pause.
# The failover test and bench/failover.py kill its controller at the first pause.
CANARY_PIPELINE = """\
version: 1
jobs:
  image:
    uses: build-image
    with:
      repository: app
      app: ["app/**"]
      entrypoint: [python, -m, app]
      env: {{HOST: 127.0.0.1, PORT: "8000", PYTHONPATH: /app}}
      port: 8000
  deploy:
    needs: [image]
    uses: deploy
    with: {{from: image, environment: staging}}
environments:
  staging:
    replicas: 1
    health:
      readiness: {{path: /healthz, interval: 100ms}}
      liveness: {{path: /healthz, interval: 500ms}}
    drain: 0.2s
    strategy:
      canary:
        baseline: true
        analysis: {{interval: 0.3s, min_duration: 0.5s, max_duration: 20s, inconclusive: promote}}
        steps:
          - weight: 30
          - pause: {pause}
          - weight: 60
          - pause: 1s
"""


def app_source(version: str, behaviour: str = "ok") -> dict[str, str]:
    """The app's source for CANARY_PIPELINE's build-image job."""
    return {"app/__main__.py": SERVER.format(version=version, behaviour=behaviour)}
