"""A small real service with business counters, built into an OCI image
(tests/deploy/apps.py's way), and a project whose staging reads them.

`GET /checkout` starts a checkout for the variant in `X-Variant` (default "off") and
places an order with probability `conversion` (the release's own: how good its checkout
is), or as `?order=1` / `?order=0` says. `/metrics` is Prometheus text, written by hand as
a service in any language would. `POST /reset` zeroes the counters (a restart the
restart count does not show); `POST /hide` leaves the orders counter out of /metrics.
"""

from __future__ import annotations

from pathlib import Path

from conveyor.service.project import Project
from deploy.apps import build_main, project_with_spec

REPOSITORY = "checkout"
FLAG = "one-page-checkout"
SERVER = """\
import http.server, os, random, socket, threading
from urllib.parse import parse_qs, urlparse

CONVERSION = {conversion!r}
VERSION = {version!r}
LOCK = threading.Lock()
COUNTS = {{"checkouts": {{}}, "orders": {{}}}}
HIDDEN = []


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path in ("/healthz", "/smoke"):
            self.answer(200, b"ok")
        elif url.path == "/checkout":
            variant = self.headers.get("X-Variant", "off")
            asked = parse_qs(url.query).get("order")
            order = asked[0] == "1" if asked else random.random() < CONVERSION
            with LOCK:
                for name in ("checkouts",) + (("orders",) if order else ()):
                    COUNTS[name][variant] = COUNTS[name].get(variant, 0) + 1
            self.answer(200, b"ordered" if order else b"left")
        elif url.path == "/metrics":
            self.answer(200, self.exposition().encode())
        else:
            self.answer(404, b"not found")

    def do_POST(self):
        if self.path == "/reset":
            with LOCK:
                for counts in COUNTS.values():
                    counts.clear()
        elif self.path == "/hide":
            HIDDEN.append("orders")
        self.answer(200, b"done")

    def exposition(self):
        lines = []
        with LOCK:
            for name, metric in (("checkouts", "app_checkouts_started_total"),
                                 ("orders", "app_orders_total")):
                if name in HIDDEN:
                    continue
                lines.append(f"# TYPE {{metric}} counter")
                for variant, value in sorted(COUNTS[name].items()):
                    labels = f'flag="{flag}",variant="{{variant}}"'
                    lines.append(f"{{metric}}{{{{{{labels}}}}}} {{value}}")
        return "\\n".join(lines) + "\\n"

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
    request_queue_size = 128


Server((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def build_checkout_app(project: Project, root: Path, version: str, conversion: float) -> str:
    """`checkout@sha256:...` in the project's image store."""
    main = SERVER.format(version=version, conversion=conversion, flag=FLAG)
    source, tag = root / f"src-{version}-{conversion}", f"{version}-{conversion}"
    return build_main(project, source, main, tag, REPOSITORY)


SPEC = """\
version: 1
jobs:
  noop: {{run: 'true'}}
environments:
  staging:
    replicas: {replicas}
    health:
      readiness: {{path: /healthz, interval: 100ms}}
      liveness: {{path: /healthz, interval: 500ms}}
      ready_timeout: 20s
    drain: 0.2s
    business:
      metrics:
        orders: {{counter: app_orders_total}}
        checkouts: {{counter: app_checkouts_started_total}}
      ratios:
        conversion: {{numerator: orders, denominator: checkouts}}
      guardrails:
        - {{ratio: conversion, max_drop: 5%, min_count: 30}}
{strategy}"""


def checkout_project(directory: Path, *, replicas: int = 2, strategy: str = "") -> Project:
    """Staging with the business section; `strategy`: YAML under `strategy:`, indented
    by 6 spaces."""
    block = f"    strategy:\n{strategy}" if strategy else ""
    return project_with_spec(directory, SPEC.format(replicas=replicas, strategy=block))
