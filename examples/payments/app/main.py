"""The WSGI application: POST /payments, GET /healthz. Standard library only."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from .payments import take_payment

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
MAX_BODY = 16 * 1024
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 404: "Not Found", 413: "Too Large"}


def application(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "/")
    if path == "/healthz" and method == "GET":
        version = os.environ.get("PAYMENTS_VERSION") or os.environ.get("CONVEYOR_VERSION", "dev")
        return _answer(start, 200, {"status": "ok", "version": version})
    if path == "/payments" and method == "POST":
        return _payment(environ, start)
    return _answer(start, 404, {"error": f"no route {method} {path}"})


def _payment(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_BODY:
        return _answer(start, 413, {"error": f"a body of at most {MAX_BODY} bytes"})
    try:
        request = json.loads(environ["wsgi.input"].read(length) or b"null")
        return _answer(start, 201, take_payment(request))
    except ValueError as error:  # not JSON, or PaymentError
        return _answer(start, 400, {"error": str(error)})


def _answer(start: StartResponse, code: int, body: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    start(f"{code} {REASONS[code]}", headers)
    return [data]
