"""A server configured for a forge, with the forge's repository as a real bare git
repository and a clone to push from; deliveries are sent as the forge would sign them."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from conftest import GIT_ENV
from conveyor.store.db import read_transaction
from conveyor.store.schema import events, run_queue, webhook_deliveries
from forge.payloads import SECRET, gitea_headers, github_headers, gitlab_headers
from server.conftest import SPEC, MakeServer, ServerUnderTest

REPOSITORY = "acme/shop"
FORGE_TOKEN = "forge-token-123"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", os.fspath(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    )
    return done.stdout.strip()


@dataclass
class ForgeServer:
    served: ServerUnderTest
    kind: str
    origin: Path  # the forge's copy of the repository (bare)
    work: Path  # a developer's clone

    def commit_and_push(self, branch: str, text: str = "change", ref: str | None = None) -> str:
        """A new commit on `branch` of the clone, pushed to `ref` (default the branch)."""
        git(self.work, "checkout", "-q", "-B", branch)
        (self.work / "notes.txt").write_text(text + "\n")
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", text)
        git(self.work, "push", "-q", "origin", f"HEAD:{ref or 'refs/heads/' + branch}")
        return git(self.work, "rev-parse", "HEAD")

    def deliver(
        self, payload: dict[str, Any] | bytes, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = self.signed(body, kw.pop("event", None)) if headers is None else headers
        return self.served.client.post(f"/hooks/{self.kind}", content=body, headers=sent, **kw)

    def signed(self, body: bytes, event: str | None = None) -> dict[str, str]:
        if self.kind == "github":
            return github_headers(body, event or "push")
        if self.kind == "gitlab":
            return gitlab_headers(event or "Push Hook")
        return gitea_headers(body, event or "push", brand=self.kind)

    def queue(self) -> list[dict[str, Any]]:
        return self._rows(sa.select(run_queue).order_by(run_queue.c.id))

    def deliveries(self) -> list[dict[str, Any]]:
        return self._rows(sa.select(webhook_deliveries).order_by(webhook_deliveries.c.id))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return self._rows(sa.select(events).where(events.c.kind == kind).order_by(events.c.id))

    def _rows(self, query: sa.Select[Any]) -> list[dict[str, Any]]:
        with read_transaction(self.served.context.store.engine) as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    @property
    def mirror(self) -> Path:
        return self.served.context.project.state_dir / "forge" / "mirror.git"


MakeForgeServer = Callable[..., ForgeServer]


def forge_spec(kind: str, origin: Path, api_url: str, branches: str) -> str:
    return SPEC + (
        "forge:\n"
        f"  kind: {kind}\n"
        f"  repository: {REPOSITORY}\n"
        f"  clone_url: {origin}\n"
        f"  api_url: {api_url}\n"
        f"  branches: {branches}\n"
    )


@pytest.fixture
def make_forge_server(
    make_server: MakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> MakeForgeServer:
    """`make_forge_server(kind, api_url=...)`: a server whose conveyor.yml names `kind` as
    its forge, the bare repository `origin` as its clone URL; the secret and token in the
    environment, as an operator would set them."""
    counter = iter(range(1, 100))

    def make(
        kind: str = "github",
        api_url: str = "http://127.0.0.1:9",
        branches: str = '[main, "feature/*"]',
        workers: int | None = None,
    ) -> ForgeServer:
        monkeypatch.setenv("CONVEYOR_FORGE_SECRET", SECRET)
        monkeypatch.setenv("CONVEYOR_FORGE_TOKEN", FORGE_TOKEN)
        n = next(counter)
        origin = tmp_path / f"origin{n}.git"
        served = make_server(forge_spec(kind, origin, api_url, branches), workers=workers)
        subprocess.run(["git", "init", "-q", "--bare", os.fspath(origin)], check=True)
        work = tmp_path / f"work{n}"
        subprocess.run(
            ["git", "clone", "-q", os.fspath(served.project.root), os.fspath(work)], check=True
        )
        git(work, "remote", "set-url", "origin", os.fspath(origin))
        git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
        return ForgeServer(served, kind, origin, work)

    return make
