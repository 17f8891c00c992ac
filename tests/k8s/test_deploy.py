"""`conveyor deploy` to a `runtime: kubernetes` environment: the deploy is recorded, the
objects applied, the Rollout followed until Argo Rollouts promotes or aborts it (a
stand-in API server answering recorded statuses)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.analysis.model import Absolute, Counts
from conveyor.analysis.providers.base import Reading
from conveyor.clock import SleptClock
from conveyor.service import environments
from conveyor.service.judge_verdict import judge_answer
from conveyor.service.project import Project
from conveyor.states import DeployState
from conveyor.store.records import EventKind
from k8s.recorded_api import Seen, recorded, recorded_api
from k8s.test_render import SHOP, put_image


def rollout_statuses(*phases: tuple[str, int, str]) -> Any:
    """Answers to the status reads, one per (phase, step, current hash); the last repeats."""
    answers = []
    for phase, step, current in phases:
        body = recorded("rollout-paused-at-analysis.json")
        body["status"] |= {"phase": phase, "currentStepIndex": step, "currentPodHash": current}
        if phase == "Degraded":
            body["status"]["message"] = 'RolloutAborted: metric "conveyor-judge" assessed Failed'
        answers.append(body)

    def answer(seen: Seen) -> tuple[int, Any] | None:
        if seen.method != "GET":
            return None
        return 200, copy.deepcopy(answers.pop(0) if len(answers) > 1 else answers[0])

    return answer


@pytest.mark.parametrize(
    ("phases", "state"),
    [
        ((("Progressing", 1, "7d9f8c6b5"), ("Healthy", 4, "5c4b7d9f8")), DeployState.SUCCEEDED),
        ((("Progressing", 1, "7d9f8c6b5"), ("Degraded", 1, "7d9f8c6b5")), DeployState.FAILED),
    ],
    ids=["promoted", "aborted"],
)
def test_deploy_applies_and_follows_the_rollout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phases: Any, state: DeployState
) -> None:
    monkeypatch.setattr("conveyor.service.kubernetes.FOLLOW_INTERVAL", 0.01)
    shop = yaml.safe_load(SHOP.read_text())
    del shop["images"]["admission"]
    with recorded_api() as api:
        api.override = rollout_statuses(*phases)
        production = shop["environments"]["production"]
        production |= {"runtime": "kubernetes", "after": None, "approval": None}
        production["kubernetes"] = {"kubeconfig": str(api.kubeconfig(tmp_path))}
        (tmp_path / "conveyor.yml").write_text(yaml.safe_dump(shop))
        digest = put_image(tmp_path)
        project = Project.locate(tmp_path / "conveyor.yml")
        said: list[str] = []
        with project.open_store() as store:
            outcome = environments.deploy(
                project, store, "production", "shop:v1", actor="tester", progress=said.append
            )
            assert outcome.state is state, outcome.reason
            (record,) = store.ledger.deploys.of_environment("production")
            assert (record.state, record.digest) == (state, digest)
            # The judge's verdicts on the release attach to this deploy (the endpoint's).
            store.ledger.history.record(
                EventKind.RELEASE_DECISION,
                "production",
                deploy_id=record.id,
                verdict="promote",
                reason="no worse",
                elapsed=9.0,
                evidence={},
            )
            assert (
                judge_answer(project, store, "production", outcome.release_id).verdict == "promote"
            )
    assert len([s for s in api.seen if s.method == "PATCH"]) == 6
    assert said[-1].startswith(
        "Rollout Healthy" if state is DeployState.SUCCEEDED else "Rollout Degraded"
    )
    if state is DeployState.FAILED:
        assert outcome.reason is not None and "Argo Rollouts aborted the release" in outcome.reason


class Scripted:
    """A metrics provider: every read, `per_read` requests per arm, `errors` of them
    failed on the canary (tests/analysis/test_polling.py's, by release id)."""

    name = "scripted"

    def __init__(self, per_read: int, errors: int) -> None:
        self.per_read, self.errors = per_read, errors
        self.arms: list[str] = []

    def start(self, releases: Sequence[str], latency_threshold: float) -> None:
        self.arms = list(releases)

    def read(self) -> Mapping[str, Reading]:
        canary, *others = self.arms
        readings = {arm: Reading(Counts(self.per_read), Absolute(), 1.0) for arm in others}
        readings[canary] = Reading(Counts(self.per_read, self.errors), Absolute(), 1.0)
        return readings


PROMETHEUS = {"url": "http://prometheus.monitoring:9090", "requests": "x", "errors": "y"}


@pytest.mark.parametrize(
    ("errors", "answer", "state"),
    [(0, "promote", DeployState.SUCCEEDED), (100, "rollback", DeployState.FAILED)],
    ids=["good-canary", "bad-canary"],
)
def test_at_an_analysis_step_the_judge_records_the_verdict_argo_reads(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    errors: int,
    answer: str,
    state: DeployState,
) -> None:
    monkeypatch.setattr("conveyor.service.kubernetes.FOLLOW_INTERVAL", 0.01)
    monkeypatch.setattr("conveyor.service.kubernetes.CLOCK", SleptClock(lambda _s: None))
    provider = Scripted(per_read=2000, errors=errors)
    monkeypatch.setattr("conveyor.service.kubernetes.judge_provider", lambda *_a: provider)
    shop = yaml.safe_load(SHOP.read_text())
    del shop["images"]["admission"]
    verdicts: list[str] = []

    def argo(seen: Seen) -> tuple[int, Any] | None:
        """Paused at the first analysis until the judge decides; then where its
        AnalysisRun (which reads the verdict) takes the Rollout."""
        if seen.method != "GET":
            return None
        body = recorded("rollout-paused-at-analysis.json")
        final = [v for v in verdicts if v != "continue"]
        if final == ["promote"]:
            body["status"] |= {
                "phase": "Healthy",
                "currentStepIndex": 4,
                "currentPodHash": "5c4b7d9f8",
            }
        elif final == ["rollback"]:
            body["status"] |= {"phase": "Degraded", "message": "RolloutAborted"}
        return 200, body

    with recorded_api() as api:
        api.override = argo
        production = shop["environments"]["production"]
        production |= {"runtime": "kubernetes", "after": None, "approval": None}
        production["strategy"]["canary"]["analysis"] |= {
            "provider": "prometheus",
            "prometheus": PROMETHEUS,
        }
        production["kubernetes"] = {"kubeconfig": str(api.kubeconfig(tmp_path))}
        (tmp_path / "conveyor.yml").write_text(yaml.safe_dump(shop))
        put_image(tmp_path)
        project = Project.locate(tmp_path / "conveyor.yml")
        with project.open_store() as store:
            old = store.ledger.deploys.begin(
                "production",
                release_id="production-shop-old",
                repository="shop",
                digest="sha256:" + "0" * 64,
                ports=[],
                previous=None,
                actor="t",
                run_id=None,
            )
            store.ledger.deploys.finish(old.id, DeployState.SUCCEEDED, None)
            original = store.ledger.history.record

            def recording(kind: EventKind, environment: str, **data: Any) -> None:
                original(kind, environment, **data)
                if kind is EventKind.RELEASE_DECISION:
                    verdicts.append(str(data["verdict"]))

            monkeypatch.setattr(store.ledger.history, "record", recording)
            outcome = environments.deploy(project, store, "production", "shop:v1", actor="t")
            assert outcome.state is state, outcome.reason
            assert provider.arms == [outcome.release_id, "production-shop-old"]
            assert verdicts[-1] == answer and set(verdicts[:-1]) <= {"continue"}
            served = judge_answer(project, store, "production", outcome.release_id)
            assert (served.verdict, served.deploy_id) == (answer, outcome.deploy_id)
