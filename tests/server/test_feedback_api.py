"""User feedback through the API, the UI page and `conveyor feedback`: the same report
(ratings per release and variant, drops, themes), pages of posts, and clear refusals."""

from __future__ import annotations

import os
import random
from pathlib import Path
from unittest import mock

import pytest

from conftest import run_cli
from conveyor.flags import Flag, FlagLedger
from observe.feedback_data import posts, spool
from server.conftest import MakeServer, ServerUnderTest

SPEC = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging:
    replicas: 1
"""
BASE = "/api/v1/environments/staging/feedback"
LOW = ["checkout slow", "checkout slow again", "payment failed", "<script>alert(1)</script>"]
HIGH = ["great prices", "fast delivery", "nice shop"]


@pytest.fixture
def shop(make_server: MakeServer) -> ServerUnderTest:
    served = make_server(SPEC)
    store = served.context.store
    for release in ("staging-shop-v1", "staging-shop-v2"):
        store.ledger.releases.register("staging", release, "shop", f"sha256:{release}", [])
    flag = Flag.model_validate(
        {
            "name": "banner",
            "enabled": True,
            "variants": [{"name": "control", "weight": 1}, {"name": "on", "weight": 1}],
        }
    )
    FlagLedger(store.engine).define("staging", flag)
    rng = random.Random(3)
    state = served.context.project.state_dir
    v1 = [rng.choice([4, 5]) for _ in range(30)]
    spool(state, "staging", posts("staging-shop-v1", v1, {"banner": "control"}, HIGH))
    v2 = [rng.choice([1, 2]) for _ in range(30)]
    spool(state, "staging", posts("staging-shop-v2", v2, {"banner": "on"}, LOW))
    return served


def test_the_api_reports_ratings_drops_and_themes_as_the_cli_does(
    shop: ServerUnderTest, tmp_path: Path
) -> None:
    answer = shop.client.get(f"{BASE}?themes=true", headers=shop.as_user("viewer"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["count"] == 60
    releases = {r["release_id"]: r for r in body["releases"]}
    assert releases["staging-shop-v1"]["count"] == 30
    assert releases["staging-shop-v2"]["high"] < releases["staging-shop-v1"]["low"]
    kinds = {
        (d["kind"], d["candidate"]["release_id"] or d["candidate"]["variant"])
        for d in body["drops"]
    }
    assert kinds == {("release", "staging-shop-v2"), ("variant", "on")}
    assert "checkout slow" in [theme["term"] for theme in body["themes"]["low"]]

    cli = run_cli(["feedback", "staging", "--themes", "-o", "json"], shop.project.root)
    assert cli.exit_code == 0, cli.stderr
    assert {k: v for k, v in cli.json().items() if k != "latest"} == {
        k: v for k, v in body.items() if k != "latest"
    }
    text = run_cli(["feedback", "staging", "--themes"], shop.project.root)
    assert "rating drop" in text.stdout and "checkout slow" in text.stdout
    token = {"CONVEYOR_TOKEN": shop.tokens["viewer"]}
    with mock.patch.dict(os.environ, token):
        remote = run_cli(["--server", shop.url, "feedback", "staging", "--themes"], tmp_path)
        remote_json = run_cli(
            ["--server", shop.url, "feedback", "staging", "--themes", "-o", "json"], tmp_path
        )
    assert remote.exit_code == 0, remote.stderr
    assert remote.stdout == text.stdout
    assert remote_json.json()["releases"] == body["releases"]


def test_the_posts_come_a_page_at_a_time_newest_first(shop: ServerUnderTest) -> None:
    viewer = shop.as_user("viewer")
    first = shop.client.get(f"{BASE}/items?limit=40", headers=viewer).json()
    assert len(first["items"]) == 40 and first["next_cursor"]
    second = shop.client.get(
        f"{BASE}/items", params={"limit": 40, "cursor": first["next_cursor"]}, headers=viewer
    ).json()
    assert len(second["items"]) == 20 and second["next_cursor"] is None
    ids = [item["id"] for item in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 60
    one = shop.client.get(f"{BASE}/items?release=staging-shop-v1", headers=viewer).json()
    assert {item["release_id"] for item in one["items"]} == {"staging-shop-v1"}


def test_unknown_environments_bad_cursors_and_strangers_are_refused(
    shop: ServerUnderTest,
) -> None:
    viewer = shop.as_user("viewer")
    missing = shop.client.get("/api/v1/environments/nope/feedback", headers=viewer)
    assert missing.status_code == 404 and missing.json()["error"]
    assert shop.client.get(f"{BASE}/items?cursor=zzz", headers=viewer).status_code == 400
    assert shop.client.get(BASE).status_code == 401
    cli = run_cli(["feedback", "nope"], shop.project.root)
    assert cli.exit_code != 0 and "nope" in cli.stderr


def test_the_ui_page_shows_releases_variants_drops_themes_and_escaped_texts(
    shop: ServerUnderTest,
) -> None:
    page = shop.client.get("/environments/staging/feedback", headers=shop.as_user("viewer"))
    assert page.status_code == 200
    html = page.text
    assert 'data-release="staging-shop-v2"' in html and 'data-variant="banner=on"' in html
    assert 'data-drop="release"' in html and 'data-theme="checkout slow"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    environment = shop.client.get("/environments/staging", headers=shop.as_user("viewer"))
    assert "/environments/staging/feedback" in environment.text
