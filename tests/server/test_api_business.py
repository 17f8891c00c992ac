"""GET /api/v1/environments/{name}/business on a real server over a real release, and
the UI page linked from the environment's page."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from conveyor.service import environments
from conveyor.states import DeployState
from observe.business_app import FLAG, SPEC, build_checkout_app
from server.conftest import MakeServer

pytestmark = [pytest.mark.real, pytest.mark.timeout(120)]


def test_business_figures_through_the_api_and_the_ui(
    make_server: MakeServer, tmp_path: Path
) -> None:
    served = make_server(SPEC.format(replicas=1, strategy="") + "  production: {}\n", workers=0)
    project, store = served.context.project, served.context.store
    image = build_checkout_app(project, tmp_path, "v1", 0.0)
    try:
        outcome = environments.deploy(project, store, "staging", image, actor="tester")
        assert outcome.state is DeployState.SUCCEEDED, outcome.reason
        record = store.ledger.environments.get("staging")
        assert record is not None
        with httpx.Client(base_url=f"http://127.0.0.1:{record.port}") as shop:
            for order in (1, 1, 0, 0, 0):
                shop.get(f"/checkout?order={order}", headers={"X-Variant": "on"})
        viewer = served.as_user("viewer")

        answer = served.client.get("/api/v1/environments/staging/business", headers=viewer)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        (release,) = body["releases"]
        assert release["release_id"] == record.live_release
        assert release["metrics"] == {"orders": 2, "checkouts": 5}
        conversion = release["ratios"][0]
        assert conversion["name"] == "conversion" and conversion["value"] == pytest.approx(0.4)
        assert 0 < conversion["interval"]["low"] < 0.4 < conversion["interval"]["high"] < 1
        assert body["variants"][0]["flag"] == FLAG and body["variants"][0]["variant"] == "on"
        assert body["guardrails"][0]["max_drop"] == 0.05

        page = served.client.get("/environments/staging/business", headers=viewer)
        assert page.status_code == 200 and "conversion" in page.text and "40.0 %" in page.text
        env_page = served.client.get("/environments/staging", headers=viewer)
        assert 'href="/environments/staging/business"' in env_page.text

        anonymous = served.client.get("/api/v1/environments/staging/business")
        assert anonymous.status_code == 401
        unknown = served.client.get("/api/v1/environments/nowhere/business", headers=viewer)
        assert unknown.status_code == 404
        plain = served.client.get("/api/v1/environments/production/business", headers=viewer)
        assert plain.status_code == 400 and "declares no business metrics" in plain.json()["reason"]
    finally:
        environments.stop_environment(project, store, "staging")
