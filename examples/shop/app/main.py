"""The FastAPI application: products API, catalogue page, health, version and metrics."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Path, Request, Response, status
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from .checkout import add_checkout_routes
from .config import Settings
from .db import ProductStore
from .faults import FaultMiddleware
from .flags import NEW_CATALOGUE_BANNER, FlagClient, NoFlags, flag_client
from .metrics import Metrics, MetricsMiddleware
from .models import ErrorBody, Product, ProductIn
from .pages import render_catalogue
from .payments import payments_client
from .security import SecurityHeadersMiddleware

TITLE = "Conveyor Shop"
SQLITE_MAX_INTEGER = 2**63 - 1  # larger ids cannot be stored, so none can exist
ProductId = Annotated[int, Path(ge=1, le=SQLITE_MAX_INTEGER, description="The product's id.")]
NOT_FOUND: dict[int | str, dict[str, object]] = {404: {"model": ErrorBody}}
# FastAPI answers 400 (not 422) when a request body cannot be decoded at all.
UNREADABLE_BODY: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "The body is not JSON."}
}
# An optional module of the app package: `router(store) -> APIRouter` adds its routes.
EXTRA_ROUTES_MODULE = "extra_routes"


class Health(BaseModel):
    status: str
    version: str


class Version(BaseModel):
    version: str


def create_app(
    db_path: str | None = None,
    *,
    settings: Settings | None = None,
    flags: FlagClient | NoFlags | None = None,
) -> FastAPI:
    """Build the service; `settings` default to the environment, `db_path` overrides SHOP_DB,
    `flags` to a client of CONVEYOR_FLAGS_URL (none: every flag at its default)."""
    settings = settings or Settings.from_env()
    store = ProductStore(db_path or settings.db_path)
    store.create_schema()
    metrics = Metrics(settings.version)
    flag_source = flags or flag_client(settings.flags_url, settings.environment)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        flag_source.close()
        if payments is not None:
            payments.close()

    app = FastAPI(
        title=TITLE,
        version=settings.version,
        description="Conveyor's sample service.",
        lifespan=lifespan,
    )
    _add_product_routes(app, store)
    _add_operational_routes(app, store, metrics, settings.version)
    _add_catalogue_page(app, store, flag_source, settings.version)
    payments = payments_client(settings.payments_url)
    add_checkout_routes(app, flag_source, metrics, settings.version, payments=payments)
    _add_extra_routes(app, store)
    app.add_middleware(
        FaultMiddleware,
        fault_rate=settings.fault_rate,
        extra_latency_ms=settings.extra_latency_ms,
    )
    # Outside the faults, so injected errors carry the headers too.
    app.add_middleware(SecurityHeadersMiddleware)
    # Added last so it is outermost: injected faults and their delay are measured too.
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    return app


def _add_product_routes(app: FastAPI, store: ProductStore) -> None:
    @app.get("/api/products", tags=["products"])
    def list_products() -> list[Product]:
        return store.list_products()

    @app.get("/api/products/{product_id}", tags=["products"], responses=NOT_FOUND)
    def get_product(product_id: ProductId) -> Product:
        product = store.get(product_id)
        if product is None:
            raise _not_found(product_id)
        return product

    @app.post(
        "/api/products",
        tags=["products"],
        status_code=status.HTTP_201_CREATED,
        responses=UNREADABLE_BODY,
    )
    def create_product(product: ProductIn, response: Response) -> Product:
        created = store.add(product)
        response.headers["Location"] = app.url_path_for("get_product", product_id=created.id)
        return created

    @app.delete(
        "/api/products/{product_id}",
        tags=["products"],
        status_code=status.HTTP_204_NO_CONTENT,
        responses=NOT_FOUND,
    )
    def delete_product(product_id: ProductId) -> None:
        if not store.delete(product_id):
            raise _not_found(product_id)


def _add_operational_routes(
    app: FastAPI, store: ProductStore, metrics: Metrics, version: str
) -> None:
    @app.get("/healthz", tags=["operations"])
    def health() -> Health:
        return Health(status="ok", version=version)

    @app.get("/version", tags=["operations"])
    def get_version() -> Version:
        return Version(version=version)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(accept: Annotated[str | None, Header()] = None) -> Response:
        body, content_type = metrics.exposition(accept)
        return Response(body, media_type=content_type)


def _add_catalogue_page(
    app: FastAPI, store: ProductStore, flags: FlagClient | NoFlags, version: str
) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def catalogue_page(request: Request) -> str:
        # remoteAddress: roll the banner out sticky per visitor with `--stickiness`.
        context = {"appName": "shop", "version": version}
        if request.client is not None:
            context["remoteAddress"] = request.client.host
        banner = flags.is_enabled(NEW_CATALOGUE_BANNER, context, default=False)
        return render_catalogue(store.list_products(), version, banner=banner)


def _add_extra_routes(app: FastAPI, store: ProductStore) -> None:
    """Mount app/extra_routes.py when a deployment (or a test fixture) adds one."""
    name = f"{__package__}.{EXTRA_ROUTES_MODULE}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name != name:  # the module exists but imports something missing
            raise
        return
    app.include_router(module.router(store))


def _not_found(product_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"product {product_id} not found")
