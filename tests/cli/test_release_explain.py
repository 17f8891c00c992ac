"""`conveyor release explain ENV`: what the canary analysis can detect at the traffic, how
soon, from the environment's recent samples or at `--rate`."""

from __future__ import annotations

import time

from conftest import MakeProject, run_cli
from conveyor.deploy.model import ReleaseSignals, SignalSample
from conveyor.deploy.sampler import to_row
from conveyor.service.project import Project
from conveyor.service.releases import explain_release

SPEC = """\
version: 1
jobs:
  build:
    run: echo built
environments:
  production:
    strategy:
      canary:
        steps:
          - weight: 20
          - analysis: {min_duration: 10s}
  staging: {}
"""


def test_explain_at_a_rate_says_how_soon_and_what_is_caught(git_project: MakeProject) -> None:
    project = git_project(SPEC)
    args = ["release", "explain", "production", "--rate", "20", "--runs", "3"]

    text = run_cli([*args, "--error-rate", "0.02"], project.root)
    found = run_cli([*args, "--error-rate", "0", "-o", "json"], project.root)

    assert text.exit_code == 0, text.stderr
    assert "production: 20 req/s, 2.000% errors (--rate)" in text.stdout
    assert "canary at 20% beside a 20% baseline" in text.stdout
    assert "a harmless release is promoted after " in text.stdout
    assert "  2x errors: " in text.stdout
    assert "10x errors: 3 of 3 rolled back within 15m00s: after " in text.stdout
    assert found.exit_code == 0, found.stderr
    data = found.json()
    assert data["traffic"] == {
        "rate": 20.0,
        "error_rate": 0.0,
        "canary_share": 0.2,
        "baseline_share": 0.2,
    }
    assert data["promote_when"]["max_hidden_error_ratio"] == 2.0
    assert data["hidden_rates"] == {"errors": 0.01, "slow": 0.01}
    # No errors anywhere: a quiet canary of 4 req/s is promoted on its own error rate
    # within minutes, and the bound on that rate shrinks as its requests grow.
    assert data["promote"]["promoted"] == 3
    assert data["promote"]["median_seconds"] <= 300
    one, five, ten = data["hidden"]
    assert (one["seconds"], five["seconds"], ten["seconds"]) == (60, 300, 600)
    assert one["error_rate"] > five["error_rate"] > ten["error_rate"]
    assert five["error_rate"] <= 0.01
    assert five["slow_ratio"] is not None and five["slow_ratio"] <= 2.0
    assert data["detections"] == []  # no errors: "2x the errors" is still none


def test_explain_reads_the_rate_from_recent_samples(git_project: MakeProject) -> None:
    project = git_project(SPEC)
    now = time.time()
    rows = [
        to_row(
            SignalSample(
                "production",
                "r1",
                now - 100 + seconds,
                ReleaseSignals(
                    "r1",
                    requests=20 * seconds,
                    responses_4xx=0,
                    responses_5xx=seconds // 5,
                    connect_failures=0,
                ),
                None,
                100,
            )
        )
        for seconds in (0, 50, 100)
    ]
    spec_project = Project.locate(project.root / "conveyor.yml")
    with spec_project.open_store() as store:
        store.ledger.samples.add(rows)
        found = explain_release(spec_project, store, "production", runs=1, now=now)

    assert found.capability.traffic.rate == 20.0
    assert found.capability.traffic.error_rate == 0.01
    assert found.source == "samples of the last 15 minutes"


def test_explain_without_traffic_or_strategy_is_one_clear_error(git_project: MakeProject) -> None:
    project = git_project(SPEC)

    silent = run_cli(["release", "explain", "production"], project.root)
    direct = run_cli(["release", "explain", "staging", "--rate", "5"], project.root)
    negative = run_cli(["release", "explain", "production", "--rate", "-1"], project.root)

    assert silent.exit_code != 0 and "Traceback" not in silent.stderr
    assert "no traffic recorded in production over the last 15 minutes" in silent.stderr
    assert "--rate 20" in silent.stderr
    assert direct.exit_code != 0 and "staging has no progressive strategy" in direct.stderr
    assert negative.exit_code != 0 and "--rate must be a positive number" in negative.stderr
