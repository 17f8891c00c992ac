"""The server under test: a project, its users (one per role) and a TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from conftest import GitProject, MakeProject
from conveyor.approvals.users import add_user, issue_token
from conveyor.server.app import create_app
from conveyor.server.context import ServerContext
from conveyor.server.queue import configure_workers
from flags.serving import serving as flag_serving

SPEC = """\
version: 1
name: demo
jobs:
  build:
    run: echo built
  test:
    needs: [build]
    run: echo tested
"""

ROLES = ("viewer", "developer", "reviewer", "admin")


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """A real uvicorn on a free 127.0.0.1 port, in a thread of the test process, with the
    app's lifespan (the queue's workers, the event hub); yields its base URL."""
    with flag_serving(app, lifespan="on") as url:
        yield url


@dataclass
class ServerUnderTest:
    project: GitProject
    context: ServerContext
    url: str
    client: httpx.Client  # base_url is the server's; no credentials of its own
    tokens: dict[str, str]  # user name (= role) -> token

    def as_user(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


MakeServer = Callable[..., ServerUnderTest]


@pytest.fixture
def make_server(git_project: MakeProject) -> Iterator[MakeServer]:
    """A factory: `make_server(spec_yaml)` -> a real server over a new committed project,
    with one user per role (named after it) and a token each."""
    with ExitStack() as stack:

        def make(spec: str = SPEC, workers: int | None = None) -> ServerUnderTest:
            project = git_project(spec)
            context = ServerContext.open(project.project(), "http://placeholder")
            stack.callback(context.close)
            if workers is not None:  # 0: nothing queued runs (a test records runs itself)
                configure_workers(context, workers)
            tokens = {}
            for role in ROLES:
                add_user(context.users_file, role, f"{role}@example.org", [role], [])
                issued = issue_token(context.users_file, role, None, datetime.now(UTC))
                tokens[role] = issued.token
            url = stack.enter_context(serving(create_app(context)))
            context.public_url = url
            client = stack.enter_context(httpx.Client(base_url=url, timeout=10.0))
            return ServerUnderTest(project, context, url, client, tokens)

        yield make


@pytest.fixture
def served(make_server: MakeServer) -> ServerUnderTest:
    return make_server()
