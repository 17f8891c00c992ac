"""Argo Rollouts' `web` metric asks Conveyor's judge over HTTP: the request exactly as its
web provider sends it (metricproviders/webmetric/webmetric.go: GET, the template's headers,
Go's client headers, no body), the answer read as it reads it (the k8s JSONPath of
`jsonPath`, then `successCondition` and `failureCondition` as utils/evaluate/evaluate.go
combines them), on a real server (uvicorn) over recorded judge verdicts."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from jsonpath_ng.parser import parse as parse_jsonpath

from conveyor.deploy.kubernetes.render import KubeRelease, render
from conveyor.spec.environments import Environment
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from k8s.test_render import ADMITTED, DIGEST
from server.conftest import MakeServer

SPEC = """\
version: 1
name: shop
jobs:
  build: {run: 'true'}
environments:
  production:
    strategy:
      canary:
        analysis: {interval: 1s, min_duration: 5s, max_duration: 15s}
        steps:
          - weight: 20
          - analysis: {}
"""
GOOD, BAD, FRESH = "production-shop-good", "production-shop-bad", "production-shop-fresh"


def web_metric(judge_url: str, release: str) -> dict[str, Any]:
    """The AnalysisTemplate's metric with Argo's `{{args.*}}` filled in for `release`."""
    spec = Environment.model_validate(
        {
            "strategy": {"canary": {"steps": [{"weight": 20}, {"analysis": {}}]}},
            "kubernetes": {"judge_url": judge_url},
        }
    )
    release_of = KubeRelease("shop", "production", spec, "shop", DIGEST, release, ADMITTED)
    (template,) = [m for m in render(release_of) if m["kind"] == "AnalysisTemplate"]
    metric: dict[str, Any] = template["spec"]["metrics"][0]
    return metric


def measure(metric: dict[str, Any], release: str, token: str) -> tuple[str, Any]:
    """One measurement as Argo's web provider takes it, with the args `release` and
    `token` filled in: (phase, result)."""
    web = metric["provider"]["web"]
    url = web["url"].replace("{{args.release}}", release)
    headers = {h["key"]: h["value"].replace("{{args.token}}", token) for h in web["headers"]}
    headers |= {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
    with httpx.Client(timeout=web["timeoutSeconds"]) as client:
        answer = client.request(web.get("method", "GET"), url, headers=headers)
    if not 200 <= answer.status_code < 300:
        return "Error", answer.status_code
    # k8s JSONPath: `{$.verdict}` is a template whose expression is `$.verdict`.
    expression = web["jsonPath"].removeprefix("{").removesuffix("}")
    (found,) = [m.value for m in parse_jsonpath(expression).find(answer.json())]
    return evaluate(metric, found), found


def condition(expression: str, result: Any) -> bool:
    """The conditions Conveyor renders are `result == "<word>"` (expr-lang); only those."""
    match = re.fullmatch(r'result == "([a-z]+)"', expression)
    assert match, f"not a condition this test evaluates: {expression}"
    return bool(result == match[1])


def evaluate(metric: dict[str, Any], result: Any) -> str:
    """evaluate.go EvaluateResult with both conditions set."""
    if condition(metric["failureCondition"], result):
        return "Failed"
    if condition(metric["successCondition"], result):
        return "Successful"
    return "Inconclusive"


def record_deploy(store: Store, release: str, verdict: str | None) -> None:
    deploy = store.ledger.deploys.begin(
        "production",
        release_id=release,
        repository="shop",
        digest=DIGEST,
        ports=[],
        previous=None,
        actor="argo",
        run_id=None,
    )
    if verdict is not None:
        store.ledger.history.record(
            EventKind.RELEASE_DECISION,
            "production",
            deploy_id=deploy.id,
            verdict="continue",
            reason="too few requests yet",
            elapsed=2.0,
            evidence={},
        )
        store.ledger.history.record(
            EventKind.RELEASE_DECISION,
            "production",
            deploy_id=deploy.id,
            verdict=verdict,
            reason=f"the judge says {verdict}",
            elapsed=9.0,
            evidence={
                "counts": {
                    "canary": {"requests": 900, "errors": 40 if verdict == "rollback" else 0}
                }
            },
        )


@pytest.mark.parametrize(
    ("release", "verdict", "phase", "answer"),
    [
        (GOOD, "promote", "Successful", "promote"),
        (BAD, "rollback", "Failed", "rollback"),
        (FRESH, "continue", "Inconclusive", "hold"),
    ],
    ids=["good-release", "bad-release", "undecided"],
)
def test_argo_web_metric_gets_the_judges_verdict(
    make_server: MakeServer, release: str, verdict: str, phase: str, answer: str
) -> None:
    served = make_server(SPEC, workers=0)
    record_deploy(served.context.store, release, verdict)
    metric = web_metric(served.url, release)
    measured, result = measure(metric, release, served.tokens["viewer"])
    assert (measured, result) == (phase, answer)

    full = served.client.get(
        f"/api/v1/environments/production/judge?release={release}", headers=served.as_user("viewer")
    ).json()
    assert (full["release"], full["judge_verdict"]) == (release, verdict)
    posted = served.client.post(
        "/api/v1/environments/production/judge",
        json={"release": release},
        headers=served.as_user("viewer"),
    )
    assert posted.json()["verdict"] == answer


def test_no_verdict_is_hold_and_a_request_without_the_token_is_an_error(
    make_server: MakeServer,
) -> None:
    served = make_server(SPEC, workers=0)
    record_deploy(served.context.store, FRESH, None)
    metric = web_metric(served.url, FRESH)
    assert measure(metric, FRESH, served.tokens["viewer"]) == ("Inconclusive", "hold")
    unknown = served.client.get(
        "/api/v1/environments/production/judge?release=nope", headers=served.as_user("viewer")
    ).json()
    assert unknown["verdict"] == "hold" and "no deploy of release nope" in unknown["reason"]
    assert measure(metric, FRESH, "not-a-token") == ("Error", 401)
    missing = served.client.get(
        "/api/v1/environments/nowhere/judge", headers=served.as_user("viewer")
    )
    assert missing.status_code == 404
