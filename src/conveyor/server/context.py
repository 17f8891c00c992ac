"""What every part of the server shares: the project, its store, who may log in, and the
URL people reach it at. One `ServerContext` per process, made by `conveyor server`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from conveyor.approvals.users import users_path
from conveyor.service.project import Project

if TYPE_CHECKING:
    from conveyor.store.store import Store

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
STATE_KEY = "conveyor"  # app.state.conveyor holds the ServerContext


@dataclass
class ServerContext:
    project: Project
    store: Store
    public_url: str
    users_file: Path
    # Parts of the server (queue, event hub, webhook counters) hang their objects here by
    # name, so app.py need not know each part's type.
    parts: dict[str, object] = field(default_factory=dict)

    @classmethod
    def open(cls, project: Project, public_url: str) -> ServerContext:
        store = project.open_store()
        return cls(
            project=project,
            store=store,
            public_url=public_url.rstrip("/"),
            users_file=users_path(project.state_dir),
        )

    def close(self) -> None:
        self.store.close()

    def url(self, path: str) -> str:
        """An absolute link to `path` (a status's target_url, a login link)."""
        return self.public_url + "/" + path.lstrip("/")


def server_context(request: Request) -> ServerContext:
    """FastAPI dependency: the process's ServerContext."""
    context: ServerContext = getattr(request.app.state, STATE_KEY)
    return context
