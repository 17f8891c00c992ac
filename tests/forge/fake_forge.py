"""A local stand-in for a forge's statuses API (http.server on 127.0.0.1): it checks each
request against what the forge documents (method, path, authentication header, body
fields and allowed states), answers 201 or 422 like the forge, and keeps every request
for the test to read. `fail_first` answers 503 that many times first (a forge that is
down)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from servers import json_post_server

TOKEN = "forge-token-123"

# forge -> (path pattern, auth header, its expected value, state field values, body fields)
DOCUMENTED: dict[str, tuple[str, str, str, frozenset[str], frozenset[str]]] = {
    "github": (
        r"^/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[0-9a-f]{40})$",
        "Authorization",
        f"Bearer {TOKEN}",
        frozenset({"pending", "success", "failure", "error"}),
        frozenset({"state", "target_url", "description", "context"}),
    ),
    "gitlab": (
        r"^/api/v4/projects/(?P<repo>[^/]+)/statuses/(?P<sha>[0-9a-f]{40})$",
        "PRIVATE-TOKEN",
        TOKEN,
        frozenset({"pending", "running", "success", "failed", "canceled"}),
        frozenset({"state", "name", "target_url", "description", "ref"}),
    ),
    "gitea": (
        r"^/api/v1/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[0-9a-f]{40})$",
        "Authorization",
        f"token {TOKEN}",
        frozenset({"pending", "success", "error", "failure", "warning"}),
        frozenset({"state", "target_url", "description", "context"}),
    ),
}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    answer: int
    problem: str | None


@dataclass
class FakeForge:
    kind: str
    url: str = ""
    fail_first: int = 0
    seen: list[Seen] = field(default_factory=list)

    @property
    def accepted(self) -> list[Seen]:
        return [s for s in self.seen if s.answer == 201]

    def check(self, method: str, path: str, headers: dict[str, str], body: Any) -> str | None:
        pattern, auth, expected, states, fields = DOCUMENTED[self.kind]
        if method != "POST":
            return f"method {method}"
        if not re.match(pattern, path):
            return f"path {path}"
        if headers.get(auth.lower()) != expected:
            return f"{auth} header {headers.get(auth.lower())!r}"
        if self.kind == "github" and headers.get("accept") != "application/vnd.github+json":
            return "Accept header"
        if not isinstance(body, dict) or body.get("state") not in states:
            return f"state {body.get('state') if isinstance(body, dict) else body!r}"
        if not set(body) <= fields:
            return f"undocumented fields {sorted(set(body) - fields)}"
        return None


@contextmanager
def fake_forge(kind: str, fail_first: int = 0) -> Iterator[FakeForge]:
    forge = FakeForge(kind, fail_first=fail_first)
    lock = threading.Lock()

    def answer(path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        with lock:
            failing = forge.fail_first > 0
            forge.fail_first -= 1 if failing else 0
        problem = None if failing else forge.check("POST", path, headers, body)
        status = 503 if failing else (422 if problem else 201)
        forge.seen.append(Seen("POST", path, headers, body or {}, status, problem))
        return status, {"state": (body or {}).get("state")}

    with json_post_server(answer) as url:
        forge.url = url
        yield forge
