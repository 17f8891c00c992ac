"""A small service that logs as real ones do, built into an OCI image (deploy/apps.py's
base and store): JSON lines from `logging` on stdout, a plain line at start that quotes
its API token (a secret the logs must mask), and, with behaviour "exceptions", an
exception logged on every request to `/` that is still answered 200."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conveyor.service.project import Project
from deploy.apps import build_main, project_with_spec

SERVER = """\
import http.server, json, logging, os, socket, sys, time

BEHAVIOUR = {behaviour!r}
VERSION = {version!r}


class JsonLines(logging.Formatter):
    def format(self, record):
        line = {{
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "version": VERSION,
        }}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


handler = logging.StreamHandler(sys.stdout)
handler.setFormatter(JsonLines())
logging.basicConfig(level=logging.INFO, handlers=[handler])
log = logging.getLogger("shop.checkout")
print(f"starting {{VERSION}} with token {{os.environ.get('API_TOKEN', '')}}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        if self.path == "/" and BEHAVIOUR == "exceptions":
            try:
                raise TimeoutError("the payment provider did not answer")
            except TimeoutError:
                log.exception("checkout failed")
        status = 404 if self.path not in ("/", "/healthz", "/smoke") else 200
        body = VERSION.encode() if self.path == "/" else b"ok"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


log.info("listening on port %s", os.environ["PORT"])
Server((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""

SPEC = """\
version: 1
jobs:
  noop: {{run: 'true'}}
environments:
  staging:
    replicas: 1
    secrets: [API_TOKEN]
    health:
      readiness: {{path: /healthz, interval: 100ms}}
    drain: 0.2s
    strategy:
      canary:
        analysis:
          log_errors: true
          interval: 0.5s
          min_duration: 3s
          max_duration: 40s
          min_effect: 2.0
          negligible_rate: 0.05
        steps:
          - weight: 50
          - analysis: {{}}
"""


def build_log_app(project: Project, root: Path, version: str, behaviour: str = "ok") -> str:
    """Build the app into the project's image store; returns `app@sha256:...`."""
    main = SERVER.format(version=version, behaviour=behaviour)
    source, tag = root / f"logs-{version}-{behaviour}", f"{version}-{behaviour}"
    return build_main(project, source, main, tag)


def make_log_project(directory: Path) -> Project:
    return project_with_spec(directory, textwrap.dedent(SPEC.format()))
