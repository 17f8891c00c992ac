"""A local stand-in for a forge's issues API (http.server on 127.0.0.1): a fake that checks
each request against what the forge documents (method, path, authentication header and
JSON body fields and types), answers 201 with the issue object the forge returns (or 422
naming what was wrong), and keeps every request for the test to read.

    GitHub  POST /repos/{owner}/{repo}/issues         Authorization: Bearer T
            title, body, labels (names)
    GitLab  POST /api/v4/projects/:id/issues          PRIVATE-TOKEN: T
            title, description, labels ("a,b")
    Gitea   POST /api/v1/repos/{owner}/{repo}/issues  Authorization: token T
            title, body (its labels are label ids: not sent)
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from servers import json_post_server

TOKEN = "issue-token-123"

# forge -> (path pattern, auth header, its value, {field: type}, required fields)
DOCUMENTED: dict[str, tuple[str, str, str, dict[str, type], frozenset[str]]] = {
    "github": (
        r"^/repos/(?P<repo>[^/]+/[^/]+)/issues$",
        "Authorization",
        f"Bearer {TOKEN}",
        {"title": str, "body": str, "labels": list},
        frozenset({"title"}),
    ),
    "gitlab": (
        r"^/api/v4/projects/(?P<repo>[^/]+)/issues$",  # the URL-encoded path is the :id
        "PRIVATE-TOKEN",
        TOKEN,
        {"title": str, "description": str, "labels": str},
        frozenset({"title"}),
    ),
    "gitea": (
        r"^/api/v1/repos/(?P<repo>[^/]+/[^/]+)/issues$",
        "Authorization",
        f"token {TOKEN}",
        {"title": str, "body": str},  # `labels` would be label ids: not sent
        frozenset({"title"}),
    ),
}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any
    answer: int
    problem: str | None


@dataclass
class FakeIssues:
    kind: str
    url: str = ""
    answer_with: int | None = None  # force this status (401, 500) instead of checking
    seen: list[Seen] = field(default_factory=list)
    next_number: int = 41

    def check(self, method: str, path: str, headers: dict[str, str], body: Any) -> str | None:
        pattern, auth, expected, fields, required = DOCUMENTED[self.kind]
        if method != "POST":
            return f"method {method}"
        if not re.match(pattern, path):
            return f"path {path}"
        if headers.get(auth.lower()) != expected:
            return f"{auth} header {headers.get(auth.lower())!r}"
        if headers.get("content-type", "").split(";")[0] != "application/json":
            return "not a JSON body"
        if not isinstance(body, dict):
            return "body is not an object"
        if not required <= set(body):
            return f"missing {sorted(required - set(body))}"
        for name, value in body.items():
            if name not in fields:
                return f"undocumented field {name}"
            if not isinstance(value, fields[name]):
                return f"{name} is not a {fields[name].__name__}"
        if self.kind == "github" and any(not isinstance(x, str) for x in body.get("labels", [])):
            return "labels are not names"
        return None

    def issue(self, path: str) -> dict[str, Any]:
        self.next_number += 1
        page = f"{self.url}/{path.strip('/')}/{self.next_number}"
        if self.kind == "gitlab":
            return {"id": 9000 + self.next_number, "iid": self.next_number, "web_url": page}
        return {"id": 9000 + self.next_number, "number": self.next_number, "html_url": page}


@contextmanager
def fake_issues(kind: str, answer_with: int | None = None) -> Iterator[FakeIssues]:
    forge = FakeIssues(kind, answer_with=answer_with)
    lock = threading.Lock()

    def answer(path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        with lock:
            problem = forge.check("POST", path, headers, body)
            status = forge.answer_with or (422 if problem else 201)
            reply = forge.issue(path) if status == 201 else {"message": problem}
            forge.seen.append(Seen(path, headers, body, status, problem))
        return status, reply

    with json_post_server(answer) as url:
        forge.url = url
        yield forge
