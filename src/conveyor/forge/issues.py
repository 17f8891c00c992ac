"""Opening an issue on the project's forge: the forge's documented request, sent once (a
retried POST could open the issue twice), and its answer read into the issue's number
and page. Every failure is one ConveyorError naming the forge's answer."""

from __future__ import annotations

import json

import httpx

from conveyor.errors import ConveyorError, InfrastructureError
from conveyor.forge.model import CreatedIssue, Forge, Malformed, NewIssue

TIMEOUT = 15.0
MAX_ANSWER = 1_000_000  # bytes of an answer that are read


def create_issue(
    forge: Forge,
    api_url: str,
    token: str,
    issue: NewIssue,
    *,
    client: httpx.Client | None = None,
) -> CreatedIssue:
    request = forge.issue_request(api_url, token, issue)
    owned = client is None
    http = client or httpx.Client(timeout=TIMEOUT)
    try:
        response = http.request(
            request.method, request.url, headers=request.headers, json=request.json
        )
    except httpx.HTTPError as error:
        raise InfrastructureError(
            f"{forge.name} did not answer {request.url}: {type(error).__name__}: {error}",
            hint="check forge.api_url in conveyor.yml and the network",
        ) from None
    finally:
        if owned:
            http.close()
    return _read_answer(forge, request.url, response)


def _read_answer(forge: Forge, url: str, response: httpx.Response) -> CreatedIssue:
    if response.status_code in (401, 403):
        raise ConveyorError(
            f"{forge.name} refused the token for {url} (HTTP {response.status_code})",
            hint="CONVEYOR_FORGE_TOKEN must be allowed to open issues on the repository",
        )
    if not response.is_success:
        raise InfrastructureError(
            f"{forge.name} answered HTTP {response.status_code} to {url}: {response.text[:300]}"
        )
    try:
        return forge.created_issue(json.loads(response.content[:MAX_ANSWER]))
    except (ValueError, Malformed) as error:
        raise InfrastructureError(
            f"{forge.name}'s answer to {url} is not an issue: {error}"
        ) from None
