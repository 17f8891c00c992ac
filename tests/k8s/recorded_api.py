"""A local stand-in for the Kubernetes API server: it checks each request against the
API's documented format and answers recorded JSON (tests/data/kubernetes/recorded/).

Server-side apply (https://kubernetes.io/docs/reference/using-api/server-side-apply/) is
`PATCH <object path>?fieldManager=<name>[&force=true]` with `Content-Type:
application/apply-patch+yaml` and the whole object as the body; the answer is the object
as stored, with `managedFields`. Anything else is answered 400 or 415 with a `Status`, so a
client that strays fails its test.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

RECORDED = Path(__file__).parents[1] / "data" / "kubernetes" / "recorded"
TOKEN = "recorded-token"
CORE = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[a-z0-9-]+)/(?P<plural>services)/(?P<name>[a-z0-9-]+)$"
)
CUSTOM = re.compile(
    r"^/apis/(?P<group>[a-z0-9.-]+)/(?P<version>v[0-9a-z]+)/namespaces/(?P<ns>[a-z0-9-]+)/"
    r"(?P<plural>[a-z]+)/(?P<name>[a-z0-9-]+)(?P<status>/status)?$"
)
KINDS = {
    "services": ("v1", "Service"),
    "rollouts": ("argoproj.io/v1alpha1", "Rollout"),
    "analysistemplates": ("argoproj.io/v1alpha1", "AnalysisTemplate"),
    "httproutes": ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    body: Any


# An answer for a request that passed the checks: (status, JSON) or None for the default.
Override = Callable[[Seen], tuple[int, Any] | None]


@dataclass
class RecordedApi:
    url: str
    seen: list[Seen] = field(default_factory=list)
    override: Override = lambda seen: None

    def kubeconfig(self, folder: Path) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "recorded", "cluster": {"server": self.url}}],
            "users": [{"name": "conveyor", "user": {"token": TOKEN}}],
            "contexts": [
                {"name": "recorded", "context": {"cluster": "recorded", "user": "conveyor"}}
            ],
            "current-context": "recorded",
        }
        path = folder / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def check_apply(seen: Seen, match: re.Match[str]) -> tuple[int, Any]:
    if seen.content_type != "application/apply-patch+yaml":
        return 415, status(415, "UnsupportedMediaType", f"not an apply patch: {seen.content_type}")
    if seen.query.get("fieldManager") != ["conveyor"] or seen.query.get("force") != ["true"]:
        return 400, status(400, "BadRequest", f"fieldManager/force: {seen.query}")
    body = seen.body
    api_version, kind = KINDS[match["plural"]]
    meta = body.get("metadata", {}) if isinstance(body, dict) else {}
    if (body.get("apiVersion"), body.get("kind")) != (api_version, kind) or (
        meta.get("name"),
        meta.get("namespace"),
    ) != (match["name"], match["ns"]):
        return 400, status(400, "BadRequest", "the body is not the object of the path")
    answered = json.loads(json.dumps(body))
    answered["metadata"] |= {
        "uid": "0d6f6c1e-7e55-4bd4-8d7a-0c5b2d1f9e01",
        "resourceVersion": "48200",
        "managedFields": [
            {
                "manager": "conveyor",
                "operation": "Apply",
                "apiVersion": api_version,
                "fieldsType": "FieldsV1",
            }
        ],
    }
    return 200, answered


def answer(api: RecordedApi, seen: Seen) -> tuple[int, Any]:
    match = CORE.match(seen.path) or CUSTOM.match(seen.path)
    if match is None or match["plural"] not in KINDS:
        return 404, status(404, "NotFound", f"the server could not find {seen.path}")
    overridden = api.override(seen)
    if overridden is not None:
        return overridden
    if seen.method == "PATCH" and not match.groupdict().get("status"):
        return check_apply(seen, match)
    if seen.method == "GET" and match["plural"] == "rollouts":
        return 200, recorded("rollout-paused-at-analysis.json")
    return 405, status(405, "MethodNotAllowed", f"{seen.method} {seen.path}")


@contextlib.contextmanager
def recorded_api() -> Iterator[RecordedApi]:
    api = RecordedApi(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            parts = urlsplit(self.path)
            seen = Seen(
                self.command,
                parts.path,
                parse_qs(parts.query),
                self.headers.get("content-type", ""),
                yaml.safe_load(raw) if raw else None,
            )
            api.seen.append(seen)
            if self.headers.get("authorization") != f"Bearer {TOKEN}":
                code, reply = 401, status(401, "Unauthorized", "no bearer token")
            else:
                code, reply = answer(api, seen)
            payload = json.dumps(reply).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
