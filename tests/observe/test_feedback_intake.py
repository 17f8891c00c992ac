"""The builtin router's feedback intake, through a real proxy process: what it stamps, and
what it refuses (bad ratings, big bodies and texts, foreign origins, floods)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.deploy.model import Backend, RouteTable
from conveyor.deploy.routers.builtin import BuiltinRouter
from conveyor.deploy.routers.feedback_intake import FEEDBACK_PATH, FeedbackLimits
from conveyor.observe.feedback import spooled
from deploy.named_servers import Backends, NamedServer, free_port, named_backends

pytestmark = [pytest.mark.real, pytest.mark.timeout(60)]

LIMITS = FeedbackLimits(
    max_body=2048,
    max_text=200,
    per_address=4,
    per_address_seconds=60.0,
    origins=("https://shop.example",),
)


@pytest.fixture
def backends() -> Iterator[Backends]:
    with named_backends() as started:
        yield started


MakeRouter = Callable[[FeedbackLimits], BuiltinRouter]


@pytest.fixture
def make_router(tmp_path: Path, backends: Backends) -> Iterator[MakeRouter]:
    started: list[BuiltinRouter] = []

    def make(limits: FeedbackLimits) -> BuiltinRouter:
        folder = tmp_path / f"router-{len(started)}"
        started.append(BuiltinRouter(folder, free_port(), free_port(), feedback=limits))
        started[-1].ensure_running()
        return started[-1]

    yield make
    for router in started:
        router.stop()


@pytest.fixture
def router(make_router: MakeRouter) -> BuiltinRouter:
    return make_router(LIMITS)


def table(*servers: tuple[NamedServer, int]) -> RouteTable:
    return RouteTable(
        backends=tuple(
            Backend(server.name, server.name, (server.address,), weight)
            for server, weight in servers
        )
    )


def own_origin(router: BuiltinRouter) -> dict[str, str]:
    return {"Origin": router.url, "Content-Type": "application/json"}


def post(router: BuiltinRouter, body: object, **headers: str) -> httpx.Response:
    merged = own_origin(router) | headers
    return httpx.post(router.url + FEEDBACK_PATH, json=body, headers=merged, timeout=5)


def test_a_post_is_stamped_with_the_release_that_serves_the_user(
    router: BuiltinRouter, backends: Backends
) -> None:
    stable, canary = backends("stable"), backends("canary")
    router.set_routes(table((stable, 50), (canary, 50)))
    with httpx.Client(base_url=router.url) as user:
        served = user.get("/").text  # the sticky cookie says which release serves it
        answer = user.post(
            FEEDBACK_PATH,
            json={"rating": 2, "text": "Slow\ncheckout", "variants": {"banner": "on"}},
            headers=own_origin(router),
        )
    assert answer.status_code == 202, answer.text
    assert answer.headers["access-control-allow-origin"] == router.url
    assert "set-cookie" not in answer.headers  # nothing new to follow the user with
    assert answer.json()["release"] == served
    [record] = spooled(router.state_dir)
    assert record["release_id"] == served and record["route"] == "sticky"
    assert record["rating"] == 2 and record["text"] == "Slow checkout"
    assert record["variants"] == {"banner": "on"}
    assert "127.0.0.1" not in json.dumps(record)  # no address kept
    assert all(seen.request_line.startswith("GET /") for seen in stable.seen + canary.seen)


def test_without_a_sticky_cookie_the_release_is_unknown_unless_only_one_serves(
    router: BuiltinRouter, backends: Backends
) -> None:
    stable, canary = backends("stable"), backends("canary")
    router.set_routes(table((stable, 50), (canary, 50)))
    assert post(router, {"rating": 4}).json()["release"] is None
    router.set_routes(table((stable, 100), (canary, 0)))
    assert post(router, {"rating": 4}).json()["release"] == "stable"
    pinned = post(router, {"rating": 5}, **{"X-Conveyor-Version": "canary"})
    assert pinned.json()["release"] == "canary"
    assert [r["route"] for r in spooled(router.state_dir)] == ["unknown", "only", "pinned"]


def test_bad_posts_are_refused_with_a_clear_status(
    make_router: MakeRouter, backends: Backends
) -> None:
    router = make_router(FeedbackLimits(per_address=20))
    router.set_routes(table((backends("stable"), 100)))
    cases: list[tuple[object, str]] = [
        ({"rating": 6}, "rating must be an integer from 1 to 5"),
        ({"rating": 0}, "rating must be"),
        ({"rating": "5"}, "rating must be"),
        ({"rating": True}, "rating must be"),
        ({"text": "no rating"}, "rating must be"),
        ([5], "must be a JSON object"),
        ({"rating": 3, "who": "me"}, "unknown fields: who"),
        ({"rating": 3, "text": 7}, "text must be a string"),
        ({"rating": 3, "variants": {"banner": "<script>"}}, "variants must map"),
        ({"rating": 3, "variants": {f"f{i}": "on" for i in range(17)}}, "at most 16"),
    ]
    for body, reason in cases:
        answer = post(router, body)
        assert answer.status_code == 400, (body, answer.text)
        assert reason in answer.json()["reason"]
    assert spooled(router.state_dir) == []


def test_oversized_texts_and_bodies_are_refused_with_413(make_router: MakeRouter) -> None:
    router = make_router(FeedbackLimits(max_body=512, max_text=100, per_address=10))
    assert post(router, {"rating": 3, "text": "x" * 101}).status_code == 413
    big = httpx.post(
        router.url + FEEDBACK_PATH,
        content=b'{"rating": 3, "text": "' + b"y" * 4000 + b'"}',
        headers=own_origin(router),
        timeout=5,
    )
    assert big.status_code == 413
    assert post(router, {"rating": 3, "text": "x" * 100}).status_code == 202
    not_json = httpx.post(
        router.url + FEEDBACK_PATH, content=b"rating=3", headers=own_origin(router), timeout=5
    )
    assert not_json.status_code == 400
    form = post(router, {"rating": 3}, **{"Content-Type": "text/plain"})
    assert form.status_code == 415
    assert len(spooled(router.state_dir)) == 1


def test_only_the_environments_own_or_configured_origins_may_post(
    router: BuiltinRouter, backends: Backends
) -> None:
    router.set_routes(table((backends("stable"), 100)))
    url = router.url + FEEDBACK_PATH
    preflight = {"Access-Control-Request-Method": "POST"}
    refused = httpx.options(url, headers={"Origin": "https://evil.example", **preflight})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    foreign = post(router, {"rating": 1}, Origin="https://evil.example")
    assert foreign.status_code == 403
    assert "access-control-allow-origin" not in foreign.headers
    allowed = httpx.options(url, headers={"Origin": "https://shop.example", **preflight})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert allowed.headers["access-control-allow-methods"] == "POST"
    assert post(router, {"rating": 5}, Origin="https://shop.example").status_code == 202
    assert len(spooled(router.state_dir)) == 1


def test_a_flood_from_one_address_is_limited_and_the_proxy_keeps_serving(
    router: BuiltinRouter, backends: Backends
) -> None:
    router.set_routes(table((backends("stable"), 100)))
    with httpx.Client(base_url=router.url, headers=own_origin(router)) as client:
        statuses = Counter(
            client.post(FEEDBACK_PATH, json={"rating": 3, "text": "spam"}).status_code
            for _ in range(40)
        )
        limited = client.post(FEEDBACK_PATH, json={"rating": 3})
        page = client.get("/")
    assert statuses == {202: LIMITS.per_address, 429: 40 - LIMITS.per_address}
    assert int(limited.headers["retry-after"]) >= 1
    assert page.status_code == 200 and page.text == "stable"  # pages are not limited
    assert len(spooled(router.state_dir)) == LIMITS.per_address
    metrics = httpx.get(f"http://127.0.0.1:{router.admin_port}/-/metrics").text
    assert 'conveyor_router_feedback_posts_total{code="429"} 37.0' in metrics
