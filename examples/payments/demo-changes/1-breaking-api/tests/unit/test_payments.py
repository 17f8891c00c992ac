"""The payments API, in-process through its WSGI application."""

from __future__ import annotations

import io
import json
from typing import Any

from app.main import application


def call(method: str, path: str, body: Any = None) -> tuple[str, dict[str, Any]]:
    data = b"" if body is None else json.dumps(body).encode()
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "CONTENT_LENGTH": str(len(data)),
        "wsgi.input": io.BytesIO(data),
    }
    seen: list[str] = []
    chunks = application(environ, lambda status, headers: seen.append(status))
    return seen[0], json.loads(b"".join(chunks))


def test_a_payment_is_accepted_with_an_id() -> None:
    status, body = call("POST", "/payments", {"order_id": "o-1", "currency": "EUR"})
    assert status == "201 Created"
    assert body["state"] == "accepted"
    assert body["payment_id"].startswith("pay_")
    assert body["order_id"] == "o-1"


def test_a_payment_without_an_order_is_refused() -> None:
    status, body = call("POST", "/payments", {"currency": "EUR"})
    assert status == "400 Bad Request"
    assert "order_id" in body["error"]


def test_an_unknown_currency_is_refused() -> None:
    status, body = call("POST", "/payments", {"order_id": "o-1", "currency": "XXX"})
    assert status == "400 Bad Request"
    assert "currency" in body["error"]


def test_health_answers() -> None:
    status, body = call("GET", "/healthz")
    assert status == "200 OK"
    assert body["status"] == "ok"
