"""The OpenFeature Remote Evaluation Protocol (OFREP v1) over the flag ledger, so any
OpenFeature SDK with an OFREP provider evaluates Conveyor's flags with no Conveyor code:

    POST /environments/{environment}/ofrep/v1/evaluate/flags/{key}   {"context": {...}}
    POST /environments/{environment}/ofrep/v1/evaluate/flags         (every flag; ETag)

A provider's base URL is `http://<host>:<port>/environments/<environment>`. The context's
`targetingKey` also serves as `userId` when the context has none (as Unleash's OpenFeature
provider maps it), so stickiness on userId works with the SDK's targeting key.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Response, status
from fastapi.responses import JSONResponse

from conveyor.flags.evaluate import Evaluation, evaluate
from conveyor.flags.store import FlagLedger, Snapshot

PREFIX = "/environments/{environment}/ofrep/v1/evaluate/flags"


def ofrep_routes(ledger: FlagLedger) -> APIRouter:
    router = APIRouter(tags=["ofrep"])

    @router.post(PREFIX + "/{key}", response_model=None)
    def evaluate_one(
        environment: str, key: str, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> JSONResponse:
        snapshot = ledger.snapshot(environment)
        record = snapshot.flags.get(key)
        if record is None:
            details = f"no flag {key!r} in {environment}"
            answer = {"key": key, "errorCode": "FLAG_NOT_FOUND", "errorDetails": details}
            return JSONResponse(answer, status_code=status.HTTP_404_NOT_FOUND)
        context = _context(body)
        result = evaluate(record.flag, context, snapshot.segment_definitions())
        return JSONResponse(_answer(key, result, snapshot))

    @router.post(PREFIX, response_model=None)
    def evaluate_all(
        environment: str,
        body: Annotated[dict[str, Any] | None, Body()] = None,
        if_none_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        snapshot = ledger.snapshot(environment)
        etag = f'"{snapshot.version}"'
        if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        context = _context(body)
        segments = snapshot.segment_definitions()
        flags = [
            _answer(name, evaluate(record.flag, context, segments), snapshot)
            for name, record in sorted(snapshot.flags.items())
        ]
        return JSONResponse({"flags": flags}, headers={"ETag": etag})

    return router


def _context(body: dict[str, Any] | None) -> dict[str, Any]:
    raw = (body or {}).get("context") or {}
    context = dict(raw) if isinstance(raw, dict) else {}
    if "targetingKey" in context and "userId" not in context:
        context["userId"] = context["targetingKey"]
    return context


def _answer(key: str, result: Evaluation, snapshot: Snapshot) -> dict[str, Any]:
    variant = result.variant.name if result.variant else ("on" if result.enabled else "off")
    return {
        "key": key,
        "value": result.enabled,
        "reason": result.reason.value,
        "variant": variant,
        "metadata": {"version": snapshot.version, "environment": snapshot.environment},
    }
