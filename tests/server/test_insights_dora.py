"""DORA through a real server: GET /api/v1/insights/dora answers what `conveyor insights
dora -o json` prints, and /insights/dora shows the figures and the weekly trends, on the
hand-computed history of tests/observe/dora_history.py."""

from __future__ import annotations

import os
import time
from pathlib import Path
from unittest import mock

import pytest

from conftest import run_cli
from conveyor.observe.dora_figures import DAY, week_start
from observe.dora_history import H, write_history
from server.conftest import MakeServer, ServerUnderTest

SPEC = """\
version: 1
name: shop
jobs:
  noop: {run: 'true'}
environments:
  staging: {replicas: 1}
  production: {replicas: 1, after: staging}
"""


@pytest.fixture
def shop(make_server: MakeServer) -> ServerUnderTest:
    served = make_server(SPEC, workers=0)
    write_history(served.context.store, week_start(time.time() - 20 * DAY))
    return served


def test_the_api_gives_the_hand_computed_figures(shop: ServerUnderTest) -> None:
    response = shop.client.get(
        "/api/v1/insights/dora", params={"since": "30d"}, headers=shop.as_user("viewer")
    )
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["environment"] == "production"
    assert (found["deployments"], found["failed_deployments"]) == (8, 5)
    assert found["change_failure_rate"] == 0.625
    assert found["lead_time"] == {"count": 7, "median": 4 * H, "p90": 9 * H}
    assert found["recovery_time"] == {"count": 5, "median": 2 * H, "p90": 24 * H}
    assert (found["rework_rate"], found["canary_stops"]) == (0.5, 1)
    assert [f["deploy_id"] for f in found["deployment_facts"]] == [1, 2, 3, 4, 6, 7, 9, 10]
    staging = shop.client.get(
        "/api/v1/insights/dora", params={"env": "staging"}, headers=shop.as_user("viewer")
    )
    assert staging.json()["deployments"] == 1


def test_the_api_refuses_strangers_and_names_bad_input(shop: ServerUnderTest) -> None:
    viewer = shop.as_user("viewer")
    assert shop.client.get("/api/v1/insights/dora").status_code == 401
    unknown = shop.client.get("/api/v1/insights/dora", params={"env": "moon"}, headers=viewer)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    for since in ("soon", "nan", "99999d"):
        bad = shop.client.get("/api/v1/insights/dora", params={"since": since}, headers=viewer)
        assert bad.status_code == 400 and "--since" in bad.json()["reason"], since


def test_the_page_shows_the_figures_and_the_weekly_trends(shop: ServerUnderTest) -> None:
    response = shop.client.get(
        "/insights/dora", params={"since": "30d"}, headers=shop.as_user("viewer")
    )
    assert response.status_code == 200, response.text
    page = response.text
    failure = page.split('data-figure="change_failure_rate"')[1].split("</tr>")[0]
    assert "62.5 % (5 of 8)" in failure and "low" in failure
    lead = page.split('data-figure="lead_time"')[1].split("</tr>")[0]
    assert "median 4h00m, p90 9h00m (n=7)" in lead and "elite" in lead
    assert page.count("<svg") == 3  # deployments, change failure rate, lead time per week
    assert "Deployments per week" in page and "<polyline" in page
    assert page.count("data-week=") == len(
        shop.client.get(
            "/api/v1/insights/dora", params={"since": "30d"}, headers=shop.as_user("viewer")
        ).json()["weeks"]
    )
    assert '<a href="/insights">Insights</a>' in page  # the nav link, to the summary
    assert (
        shop.client.get("/insights/dora?env=moon", headers=shop.as_user("viewer")).status_code
        == 404
    )


def test_the_cli_against_the_server_prints_what_it_prints_locally(
    shop: ServerUnderTest, tmp_path: Path
) -> None:
    args = ["insights", "dora", "--since", "30d"]
    local_text = run_cli(args, shop.project.root)
    local_json = run_cli([*args, "-o", "json"], shop.project.root)
    with mock.patch.dict(os.environ, {"CONVEYOR_TOKEN": shop.tokens["viewer"]}):
        remote_text = run_cli(["--server", shop.url, *args], tmp_path)
        remote_json = run_cli(["--server", shop.url, *args, "-o", "json"], tmp_path)
        unknown = run_cli(["--server", shop.url, "insights", "dora", "--env", "moon"], tmp_path)
    assert remote_text.exit_code == 0, remote_text.stderr
    assert remote_text.stdout == local_text.stdout
    assert "62.5 % (5 of 8)" in remote_text.stdout
    remote, local = remote_json.json(), local_json.json()
    assert abs(remote.pop("until") - local.pop("until")) < 60  # each asked at its own now
    assert abs(remote.pop("since") - local.pop("since")) < 60
    assert remote == local
    assert unknown.exit_code == 4
