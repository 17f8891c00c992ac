"""A run's reports through the API: kinds with summaries, findings grouped by disposition
with file:line (a real lint job's), failed tests with their messages, gate decisions."""

from __future__ import annotations

import json

from server.conftest import MakeServer, ServerUnderTest

SPEC = """\
version: 1
name: shop
jobs:
  lint:
    uses: lint
"""
SOURCE = "import os\n\n\ndef greet(name):\n    return f'hello {name}'\n"
TESTS = {
    "totals": {"passed": 3, "failed": 1},
    "duration": 1.5,
    "failures": [
        {"id": "tests/test_cart.py::test_total", "outcome": "failed", "message": "assert 3 == 4"}
    ],
}
GATE = {"gate": "findings", "passed": False, "reasons": ["1 new finding"], "counts": {"new": 1}}


def _linted(make_server: MakeServer) -> tuple[ServerUnderTest, int]:
    served = make_server(SPEC)
    served.project.commit({"app/views.py": SOURCE})
    run_id = served.project.run().run_id
    store = served.context.store
    for kind, document in (("tests", TESTS), ("gate", GATE)):
        digest = store.blobs.put_bytes(json.dumps(document).encode())
        store.add_report(run_id, "lint", kind, digest, {})
    return served, run_id


def test_reports_kinds_findings_tests_and_gates(make_server: MakeServer) -> None:
    served, run_id = _linted(make_server)
    viewer = served.as_user("viewer")
    kinds = served.client.get(f"/api/v1/runs/{run_id}/reports", headers=viewer)
    assert kinds.status_code == 200
    summaries = {item["kind"]: item["summary"] for item in kinds.json()["items"]}
    assert set(summaries) == {"findings", "tests", "gates"}
    assert summaries["findings"]["new"] >= 1
    assert summaries["tests"] == {"passed": 3, "failed": 1}
    assert summaries["gates"] == {"passed": 0, "failed": 2}  # the lint job's own, and ours

    findings = served.client.get(f"/api/v1/runs/{run_id}/reports/findings", headers=viewer)
    unused = [f for f in findings.json()["new"] if f["rule_id"] == "F401"]
    assert unused and unused[0]["location"] == "app/views.py:1"
    tests = served.client.get(f"/api/v1/runs/{run_id}/reports/tests", headers=viewer).json()
    assert tests["failed"] == [
        {
            "job": "lint",
            "id": "tests/test_cart.py::test_total",
            "outcome": "failed",
            "message": "assert 3 == 4",
            "location": None,
        }
    ]
    gates = served.client.get(f"/api/v1/runs/{run_id}/reports/gates", headers=viewer).json()
    assert ["1 new finding"] in [doc["reasons"] for doc in gates["documents"]]


def test_reports_answer_401_and_404(served: ServerUnderTest) -> None:
    run_id = served.project.run().run_id
    assert served.client.get(f"/api/v1/runs/{run_id}/reports").status_code == 401
    viewer = served.as_user("viewer")
    empty = served.client.get(f"/api/v1/runs/{run_id}/reports", headers=viewer)
    assert empty.status_code == 200 and empty.json()["items"] == []
    assert served.client.get("/api/v1/runs/77/reports", headers=viewer).status_code == 404
    unknown = served.client.get(f"/api/v1/runs/{run_id}/reports/nope", headers=viewer)
    assert unknown.status_code == 404 and "findings" in unknown.json()["hint"]
