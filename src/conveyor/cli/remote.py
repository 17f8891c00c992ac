"""The CLI's client of a Conveyor server (`conveyor --server URL ...`, `CONVEYOR_SERVER`).

Every call goes to the server's REST API (`/api/v1`, docs/server.md) with the caller's
token (`Authorization: Bearer`, from $CONVEYOR_TOKEN or --token-file; never from the
command line), and answers with the service's own dataclasses, decoded from the JSON the
server sends: the command prints them with the printer it uses locally. Every failure
becomes a ConveyorError with the exit code the same failure has locally (docs/cli.md#exit-codes):
404 -> 4; 401/403 -> 1 (refused, as a refused approval locally); other 4xx -> 2; an
absent or failing server -> 3; each with the server's reason and hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from conveyor.cli.decoding import DecodeError, decode
from conveyor.errors import ConveyorError, ExitCode, InfrastructureError, NotFoundError

T = TypeVar("T")

API = "/api/v1"
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
STREAM_TIMEOUT = httpx.Timeout(30.0, connect=5.0, read=None)  # SSE: heartbeats, no deadline
PAGE_LIMIT = 200  # the API's largest page


class NotLoggedIn(ConveyorError):
    """The server wants a token (401): none was given, or it is unknown or expired. Exit 1,
    as a refused token of `approve` locally (docs/cli.md#exit-codes)."""

    exit_code = ExitCode.PIPELINE_FAILED


class NotAllowed(ConveyorError):
    """The server knows the caller, whose roles do not allow this (403): exit 1, as a
    refused approval locally."""

    exit_code = ExitCode.PIPELINE_FAILED


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event of `/api/v1/events`."""

    kind: str
    data: dict[str, Any]
    id: int | None = None


@dataclass(frozen=True)
class Bytes:
    data: bytes
    headers: Mapping[str, str]


class RemoteClient:
    """A Conveyor server's API, with the caller's token."""

    def __init__(self, base_url: str, token: str | None, http: httpx.Client) -> None:
        self.base_url = base_url
        self.token = token
        self.http = http

    @classmethod
    def connect(
        cls, server: str, token_file: str | None = None, *, token: str | None = None
    ) -> RemoteClient:
        from conveyor.cli.tokens import caller_token

        base = server.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConveyorError(
                f"--server takes a URL such as http://127.0.0.1:8080, not {server!r}",
                hint="the URL `conveyor server` printed when it started",
            )
        token = token or caller_token(token_file, None)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers["Accept"] = "application/json"
        return cls(base, token, httpx.Client(base_url=base, headers=headers, timeout=TIMEOUT))

    def close(self) -> None:
        self.http.close()

    # --- plain requests -----------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self._json(self._send("GET", path, params=_clean(params)))

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._json(self._send("POST", path, json=dict(body or {})))

    def put(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._json(self._send("PUT", path, json=dict(body)))

    def get_bytes(self, path: str, params: Mapping[str, Any] | None = None) -> Bytes:
        response = self._send("GET", path, params=_clean(params))
        return Bytes(response.content, response.headers)

    def get_as(self, kind: type[T], path: str, params: Mapping[str, Any] | None = None) -> T:
        return self.decoded(kind, self.get(path, params), path)

    def items(
        self, path: str, params: Mapping[str, Any] | None = None, limit: int = 0
    ) -> list[Any]:
        """A list's items, page after page (`next_cursor`), at most `limit` (0: all)."""
        found: list[Any] = []
        query = dict(_clean(params))
        while True:
            want = PAGE_LIMIT if not limit else min(PAGE_LIMIT, limit - len(found))
            page = self.get(path, {**query, "limit": want})
            items, cursor = _page(page, self.base_url + path)
            found += items
            if not cursor or (limit and len(found) >= limit) or not items:
                return found[:limit] if limit else found
            query["cursor"] = cursor

    def decoded(self, kind: type[T], value: Any, path: str) -> T:
        try:
            return decode(kind, value)
        except (DecodeError, ValueError, TypeError) as error:
            raise _bad_answer(self.base_url + path, str(error)) from None

    def events(self, topics: list[str]) -> Iterator[ServerEvent]:
        """The live events of `topics` (`/api/v1/events`), until the server ends the
        stream; a first event of kind `connected` says the subscription is in place."""
        try:
            with self.http.stream(
                "GET",
                f"{API}/events",
                params={"topic": topics},
                headers={"Accept": "text/event-stream"},
                timeout=STREAM_TIMEOUT,
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _failure(response, self.base_url)
                yield from _parse_sse(response.iter_lines())
        except httpx.TransportError as error:
            raise _unreachable(self.base_url, error) from None

    # --- the transport ------------------------------------------------------------------

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **options)
        except httpx.TimeoutException:
            raise InfrastructureError(
                f"the Conveyor server at {self.base_url} did not answer within "
                f"{TIMEOUT.read:.0f} s",
                hint="it may be overloaded; try again, or look at its log",
            ) from None
        except httpx.TransportError as error:
            raise _unreachable(self.base_url, error) from None
        if response.status_code >= 400:
            raise _failure(response, self.base_url)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _bad_answer(str(response.request.url), "not JSON") from None


def path_of(*parts: str | int) -> str:
    """`/api/v1/runs/12/jobs/test%5Bpy%3D3.12%5D/log`: each part quoted."""
    return API + "".join("/" + quote(str(part), safe="") for part in parts)


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (params or {}).items() if v is not None}


def _page(page: Any, url: str) -> tuple[list[Any], str | None]:
    if isinstance(page, list):  # a list without pages
        return page, None
    if not isinstance(page, dict) or not isinstance(page.get("items"), list):
        raise _bad_answer(url, "a list answer without `items`")
    cursor = page.get("next_cursor")
    return page["items"], cursor if isinstance(cursor, str) and cursor else None


def _unreachable(base_url: str, error: Exception) -> InfrastructureError:
    return InfrastructureError(
        f"no Conveyor server answers at {base_url} ({type(error).__name__})",
        hint="start it with `conveyor server`, or check --server / $CONVEYOR_SERVER "
        "(the URL `conveyor server` printed)",
    )


def _bad_answer(url: str, what: str) -> InfrastructureError:
    return InfrastructureError(
        f"{url} did not answer as a Conveyor server does: {what}",
        hint="is --server / $CONVEYOR_SERVER the URL of a Conveyor server of this version?",
    )


def _failure(response: httpx.Response, base_url: str) -> ConveyorError:
    """The server's error, as the same error locally: {"error", "reason", "hint"}, or
    FastAPI's {"detail"}."""
    reason, hint = _reason(response)
    status = response.status_code
    if status == 401:
        return NotLoggedIn(
            f"the server refused you: {reason or 'not logged in'}",
            hint="log in: set CONVEYOR_TOKEN, or pass --token-file FILE (`conveyor users "
            "token NAME` issues one on the server's machine)",
        )
    if status == 403:
        return NotAllowed(
            f"not allowed: {reason or 'your roles do not allow this'}",
            hint=hint or "ask an admin of the server for a role that allows it",
        )
    if status == 404:
        return NotFoundError(reason or f"not found: {response.request.url.path}", hint=hint)
    if status >= 500:
        return InfrastructureError(
            f"the Conveyor server at {base_url} failed ({status}): "
            f"{reason or response.reason_phrase}",
            hint=hint or "its log says why",
        )
    return ConveyorError(reason or f"the server answered {status}", hint=hint)


def _reason(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    reason = body.get("reason") or body.get("detail")
    hint = body.get("hint")
    return (
        reason if isinstance(reason, str) else (json.dumps(reason) if reason else None),
        hint if isinstance(hint, str) else None,
    )


def _parse_sse(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events (`id:`, `event:`, `data:` lines, a blank line ends one); the
    `: connected` comment becomes a `connected` event."""
    kind: str = "message"
    ident: int | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith(": connected"):
            yield ServerEvent("connected", {})
            continue
        if not line:
            if data:
                yield ServerEvent(kind, _event_data("\n".join(data)), ident)
            kind, ident, data = "message", None, []
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            kind = value
        elif field == "data":
            data.append(value)
        elif field == "id" and value.isdigit():
            ident = int(value)


def _event_data(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}
