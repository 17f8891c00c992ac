"""The server's ASGI application: one FastAPI app holding the REST API (`/api/v1`), the
web UI (`/`), the forge webhooks (`/hooks`) and the static assets.

Each part is a module exposing `router` (a FastAPI APIRouter); `ROUTERS` lists them, one
line per part, imported when the app is made.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRouter
from starlette.exceptions import HTTPException as StarletteHTTPException

from conveyor import __version__
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.server.context import STATE_KEY, ServerContext

# module:attribute of each part's APIRouter; the order is the order of matching.
ROUTERS: tuple[str, ...] = (
    "conveyor.server.api.meta:router",
    "conveyor.server.api.runs:router",
    "conveyor.server.api.approvals:router",
    "conveyor.server.api.flags:router",
    "conveyor.server.api.reports:router",
    "conveyor.server.api.images:router",
    "conveyor.server.api.audit:router",
    "conveyor.server.api.environments:router",
    "conveyor.server.api.insights_summary:router",
    "conveyor.server.api.release_notes:router",
    "conveyor.server.api.feedback:router",
    "conveyor.server.api.alerts:router",
    "conveyor.server.api.incidents:router",
    "conveyor.server.api.business:router",
    "conveyor.server.api.judge:router",
    "conveyor.server.ui.business:router",
    "conveyor.server.api.replica_logs:router",
    "conveyor.server.events:router",
    "conveyor.server.hooks:router",
    "conveyor.server.ui.runs:router",
    "conveyor.server.ui.logs:router",
    "conveyor.server.ui.reports:router",
    "conveyor.server.ui.images:router",
    "conveyor.server.ui.environments:router",
    "conveyor.server.ui.feedback:router",
    "conveyor.server.ui.replica_logs:router",
    "conveyor.server.ui.approvals:router",
    "conveyor.server.ui.flags:router",
    "conveyor.server.ui.audit:router",
    "conveyor.server.ui.incidents:router",
    "conveyor.server.api.run_actions:router",
    "conveyor.server.ui.pages:router",
    "conveyor.server.login:router",
    "conveyor.server.api.insights:router",
    "conveyor.server.ui.insights:router",
)

# Each part may also start and stop work beside the app (the run queue's workers, the
# event hub): module:function taking the ServerContext, returning an async context manager.
LIFESPANS: tuple[str, ...] = (
    "conveyor.server.events:lifespan",
    "conveyor.server.statuses:lifespan",
    "conveyor.server.queue:lifespan",
    "conveyor.server.watch:lifespan",
    "conveyor.server.controllers:lifespan",
)

API_PREFIX = "/api/v1"


def create_app(context: ServerContext) -> FastAPI:
    app = FastAPI(
        title="Conveyor",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=_lifespan(context),
    )
    setattr(app.state, STATE_KEY, context)
    for entry in ROUTERS:
        app.include_router(_load(entry))
    _mount_static(app)
    app.add_exception_handler(ConveyorError, _conveyor_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    return app


def _load(entry: str) -> APIRouter:
    module, _, attribute = entry.partition(":")
    router: APIRouter = getattr(importlib.import_module(module), attribute)
    return router


def _lifespan(
    context: ServerContext,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for entry in LIFESPANS:
                module, _, attribute = entry.partition(":")
                factory = getattr(importlib.import_module(module), attribute)
                await stack.enter_async_context(factory(context))
            yield

    return lifespan


def _mount_static(app: FastAPI) -> None:
    from fastapi.staticfiles import StaticFiles

    from conveyor.server.ui import STATIC_DIR

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


ERROR_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "gone",
    413: "too_large",
    422: "invalid",
}


async def _conveyor_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ConveyorError)
    code = 404 if isinstance(error, NotFoundError) else 400
    return _error(request, code, error.message, error.hint)


async def _http_error(request: Request, error: Exception) -> Response:
    """Every refusal in one shape: {"error", "reason", "hint"}; a page for a browser."""
    assert isinstance(error, StarletteHTTPException)
    reason = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
    return _error(request, error.status_code, reason, None, dict(error.headers or {}))


def _error(
    request: Request,
    code: int,
    reason: str,
    hint: str | None,
    headers: dict[str, str] | None = None,
) -> Response:
    if _wants_page(request):
        from conveyor.server.ui import templates

        return templates.TemplateResponse(
            request,
            "error.html",
            {
                "code": code,
                "phrase": HTTPStatus(code).phrase,
                "reason": reason,
                "hint": hint,
                "principal": getattr(request.state, "principal", None),
            },
            status_code=code,
            headers=headers,
        )
    body = {"error": ERROR_CODES.get(code, "error"), "reason": reason, "hint": hint}
    return JSONResponse(body, status_code=code, headers=headers)


def _wants_page(request: Request) -> bool:
    path = request.url.path
    return (
        request.method in ("GET", "POST")
        and not path.startswith((API_PREFIX, "/hooks/"))
        and "text/html" in request.headers.get("accept", "")
    )


async def _invalid_request(_request: Request, error: Exception) -> JSONResponse:
    # The fields that failed, never the values sent (they may be secrets).
    assert isinstance(error, RequestValidationError)
    fields = [".".join(str(p) for p in e.get("loc", ())) for e in error.errors()]
    return JSONResponse(
        {"error": "invalid", "reason": "invalid request", "fields": fields}, status_code=422
    )


__all__ = ["API_PREFIX", "ROUTERS", "HTTPException", "create_app"]
