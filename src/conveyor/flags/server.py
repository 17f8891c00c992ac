"""The flag evaluation HTTP API (`conveyor flags serve`).

    GET  /flags/{environment}          every definition, for SDKs that evaluate locally;
                                       ETag is the environment's version (If-None-Match: 304)
    GET  /flags/{environment}/{flag}   evaluate; the query string is the context
    POST /evaluate                     {"environment", "flag", "context": {...}}
    POST /environments/{environment}/ofrep/v1/evaluate/flags[/{flag}]   OFREP (ofrep.py)
    GET  /healthz

Each request reads the store, so a kill is served by the next request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from conveyor.flags.evaluate import evaluate
from conveyor.flags.model import DefinitionsBody, Payload
from conveyor.flags.ofrep import ofrep_routes
from conveyor.flags.store import FlagLedger, Snapshot

DEFAULT_PORT = 4242


class EvaluateRequest(BaseModel):
    environment: str
    flag: str
    context: dict[str, Any] = Field(default_factory=dict)


class EvaluationBody(BaseModel):
    environment: str
    flag: str
    value: bool
    variant: str | None
    payload: Payload | None
    reason: str  # an OpenFeature reason: DISABLED, STATIC, TARGETING_MATCH, SPLIT, DEFAULT
    detail: str
    version: int  # the environment's version the answer comes from


class Health(BaseModel):
    status: str


def create_app(ledger: FlagLedger) -> FastAPI:
    app = FastAPI(title="Conveyor flags", description="Feature flag evaluation (docs/flags.md).")

    app.include_router(ofrep_routes(ledger))

    @app.get("/healthz")
    def health() -> Health:
        return Health(status="ok")

    @app.get("/flags/{environment}", response_model=DefinitionsBody)
    def definitions(
        environment: str,
        response: Response,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> DefinitionsBody | Response:
        snapshot = ledger.snapshot(environment)
        etag = etag_of(snapshot.version)
        if if_none_match is not None and etag in _etags(if_none_match):
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        response.headers["ETag"] = etag
        return definitions_body(snapshot)

    @app.get("/flags/{environment}/{flag}")
    def evaluate_get(environment: str, flag: str, request: Request) -> EvaluationBody:
        return _evaluate(ledger, environment, flag, dict(request.query_params))

    @app.post("/evaluate")
    def evaluate_post(body: EvaluateRequest) -> EvaluationBody:
        return _evaluate(ledger, body.environment, body.flag, body.context)

    return app


def definitions_body(snapshot: Snapshot) -> DefinitionsBody:
    return DefinitionsBody(
        environment=snapshot.environment,
        version=snapshot.version,
        flags=[record.flag for _, record in sorted(snapshot.flags.items())],
        segments=[record.segment for _, record in sorted(snapshot.segments.items())],
    )


def etag_of(version: int) -> str:
    return f'"{version}"'


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header, weak ones compared as strong."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _evaluate(
    ledger: FlagLedger, environment: str, name: str, context: dict[str, Any]
) -> EvaluationBody:
    snapshot = ledger.snapshot(environment)
    record = snapshot.flags.get(name)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no flag {name!r} in {environment}")
    result = evaluate(record.flag, context, snapshot.segment_definitions())
    return EvaluationBody(
        environment=environment,
        flag=name,
        value=result.enabled,
        variant=result.variant.name if result.variant else None,
        payload=result.variant.payload if result.variant else None,
        reason=result.reason.value,
        detail=result.detail,
        version=snapshot.version,
    )


def serve(ledger: FlagLedger, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Serve the API until interrupted."""
    import uvicorn

    uvicorn.run(create_app(ledger), host=host, port=port, log_level="warning")
