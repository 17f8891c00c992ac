"""A Conveyor server for the CLI's remote-mode tests: the real app (its auth, whoami and
event stream) plus a minimal implementation of the API contract the CLI's client speaks
(docs/server.md), answering from the project's real store with what `conveyor <cmd> -o
json` prints; every request to the contract's routes is recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from conftest import CliResult, GitProject, MakeProject, run_cli
from conveyor.approvals.users import add_user, issue_token
from conveyor.flags.store import FlagLedger
from conveyor.server.app import create_app
from conveyor.server.auth import Action, require
from conveyor.server.context import ServerContext
from conveyor.server.logs import read_range
from conveyor.service.jsonable import to_jsonable
from conveyor.service.queries import run_view
from deploy.apps import ENVIRONMENTS
from server.conftest import ROLES, serving

SPEC = """\
version: 1
name: demo
jobs:
  build:
    run: echo built && echo second line
  test:
    needs: [build]
    run: echo tested
""" + ENVIRONMENTS.format(
    replicas=1,
    runtime="process",
    router="builtin",
    ready_timeout="5s",
    drain="0.1s",
    strategy="",
)
LOG_PIECE = 40  # bytes per log answer: the client must read a log in ranges


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    body: Any


@dataclass
class FakeServer:
    project: GitProject
    context: ServerContext
    url: str
    tokens: dict[str, str]
    elsewhere: Any  # a folder without a project: the remote CLI's working directory
    seen: list[Seen] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # path -> a canned JSON answer
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)  # runs started

    def cli(self, *args: str, user: str | None = "developer", **env: str) -> CliResult:
        """`conveyor --server URL ARGS` as `user` (CONVEYOR_TOKEN), from a folder without
        a project."""
        token = {"CONVEYOR_TOKEN": self.tokens[user]} if user else {}
        with mock.patch.dict(os.environ, {**token, **env}):
            return run_cli(["--server", self.url, *args], self.elsewhere)

    def local(self, *args: str) -> CliResult:
        return run_cli(list(args), self.project.root)

    def requests(self, path_prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(path_prefix)]


def contract_router(server: FakeServer) -> APIRouter:
    async def record(request: Request) -> None:
        body = await request.body()
        server.seen.append(
            Seen(
                request.method,
                request.url.path,
                {k: request.query_params.getlist(k) for k in request.query_params},
                request.headers.get("authorization"),
                json.loads(body) if body else None,
            )
        )

    router = APIRouter(prefix="/api/v1", dependencies=[Depends(record)])
    reader = Depends(require("project", Action.READ))
    context = server.context

    def canned(request: Request) -> JSONResponse | None:
        found = server.answers.get(request.url.path)
        return None if found is None else JSONResponse(found)

    @router.get("/runs", dependencies=[reader])
    def runs(limit: int = 50, cursor: str | None = None, branch: str | None = None) -> Any:
        found = context.store.list_runs(10_000, branch=branch)
        if cursor:
            found = [run for run in found if run.id < int(cursor)]
        page = found[:limit]
        more = len(found) > limit
        return {"items": to_jsonable(page), "next_cursor": str(page[-1].id) if more else None}

    @router.get("/runs/{run_id}", dependencies=[reader])
    def run(run_id: int) -> Any:
        view = run_view(context.store, run_id)
        return to_jsonable({"run": view.run, "jobs": view.jobs})

    @router.get("/runs/{run_id}/jobs/{job}/log", dependencies=[reader])
    def log(run_id: int, job: str, offset: int | None = None) -> Response:
        piece = read_range(context, run_id, job, offset, LOG_PIECE)
        return Response(
            piece.data,
            media_type="text/plain",
            headers={"X-Log-Size": str(piece.size), "X-Log-Finished": str(piece.finished)},
        )

    creator = Depends(require("runs", Action.CREATE))

    @router.post("/runs", status_code=202, dependencies=[creator])
    def trigger() -> Any:
        return start_run()

    @router.post("/runs/{run_id}/rerun-failed", status_code=202, dependencies=[creator])
    def rerun(run_id: int) -> Any:
        return start_run("--rerun-failed", str(run_id))

    def start_run(*options: str) -> Any:
        newest = context.store.latest_run()
        server.answers["before"] = newest.id if newest else 0
        started = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from conveyor.cli.app import main; main()",
                "run",
                "-q",
                *options,
            ],
            cwd=server.project.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server.processes.append(started)
        return {"queue_id": 1, "state": "queued", "run_id": None}

    @router.get("/queue/{queue_id}", dependencies=[reader])
    def queued(queue_id: int) -> Any:
        newest = context.store.latest_run()
        started = newest is not None and newest.id > server.answers["before"]
        return {
            "queue_id": queue_id,
            "state": "claimed" if started else "queued",
            "run_id": newest.id if started and newest else None,
        }

    @router.get("/environments/{environment}/flags", dependencies=[reader])
    def flags(environment: str) -> Any:
        snapshot = FlagLedger(context.store.engine).snapshot(environment)
        records = [record for _, record in sorted(snapshot.flags.items())]
        return to_jsonable(
            {"environment": environment, "version": snapshot.version, "flags": records}
        )

    updater = Depends(require("flags", Action.UPDATE))

    @router.put("/environments/{environment}/flags/{name}", dependencies=[updater])
    async def set_flag(environment: str, name: str, request: Request) -> Any:
        enabled = (await request.json())["enabled"]
        ledger = FlagLedger(context.store.engine)
        return to_jsonable(ledger.set_enabled(environment, name, enabled, actor="remote"))

    @router.post("/environments/{environment}/flags/{name}/rollout", dependencies=[updater])
    async def rollout(environment: str, name: str, request: Request) -> Any:
        body = await request.json()
        ledger = FlagLedger(context.store.engine)
        record = ledger.rollout(
            environment, name, body["percentage"], stickiness=body.get("stickiness"), actor="remote"
        )
        return to_jsonable(record)

    @router.post("/environments/{environment}/flags/{name}/kill", dependencies=[updater])
    def kill(environment: str, name: str) -> Any:
        ledger = FlagLedger(context.store.engine)
        return to_jsonable(ledger.kill(environment, name, actor="remote", reason=None))

    # Answers the tests set: approvals, environments, audit, a broken answer.
    for path, method in (
        ("/approvals", "get"),
        ("/runs/{run_id}/approve", "post"),
        ("/runs/{run_id}/approvals", "get"),
        ("/environments/{environment}/history", "get"),
        ("/environments", "get"),
        ("/environments/{environment}", "get"),
        ("/audit/verify", "get"),
        ("/broken", "get"),
    ):
        getattr(router, method)(path, dependencies=[reader])(_canned_route(canned))
    return router


def _canned_route(canned: Callable[[Request], JSONResponse | None]) -> Callable[..., Response]:
    def route(request: Request) -> Response:
        found = canned(request)
        return found if found is not None else Response("not json", media_type="text/plain")

    return route


MakeFake = Callable[..., FakeServer]


@pytest.fixture
def fake_server(git_project: MakeProject, tmp_path: Any) -> Iterator[FakeServer]:
    with ExitStack() as stack:
        project = git_project(SPEC)
        context = ServerContext.open(project.project(), "http://placeholder")
        stack.callback(context.close)
        tokens = {}
        for role in ROLES:
            add_user(context.users_file, role, f"{role}@example.org", [role], [])
            tokens[role] = issue_token(context.users_file, role, None, datetime.now(UTC)).token
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        server = FakeServer(project, context, "", tokens, elsewhere)
        app = create_app(context)
        # The contract's routes answer first (they record what the client sends); the real
        # API's are tested against the client in test_remote_e2e.py.
        count = len(app.router.routes)
        app.include_router(contract_router(server))
        app.router.routes[:] = app.router.routes[count:] + app.router.routes[:count]
        server.url = stack.enter_context(serving(app))
        context.public_url = server.url
        yield server
        for process in server.processes:
            process.kill()
            process.wait()
