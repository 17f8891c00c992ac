"""Real data for the UI's release, approval and flag pages, written through the store's
own APIs (the ledger, the approvals service, the flag ledger).

A canary is recorded the way the controller records one (deploy/canary.py and
deploy/rollout.py: `deploys.begin`, `release.step` events, traffic shifts with the
weights, `release.decision` events with the judge's evidence, samples, `deploys.finish`),
over a fake clock spread across four minutes: running a real canary to its decision takes
a minute or more, too slow for a page test; tests/deploy runs real ones.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.approvals.model import ApprovalRequest
from conveyor.service import approvals as approvals_service
from conveyor.service.project import Project
from conveyor.spec.environments import Approval
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import SampleRow
from conveyor.store.ledger import deploys as deploys_module
from conveyor.store.ledger import environments as environments_module
from conveyor.store.ledger import history as history_module
from conveyor.store.ledger import releases as releases_module
from conveyor.store.records import EventKind, NewRun
from conveyor.store.store import Store

SPEC = """\
version: 1
name: shop
jobs:
  build:
    run: echo built
environments:
  staging:
    runtime: process
    router: builtin
    health:
      readiness: {path: /healthz}
    strategy:
      canary:
        analysis: {interval: 5s}
        steps:
          - weight: 10
          - analysis: {}
          - weight: 50
          - analysis: {}
  production:
    after: staging
    approval:
      roles: [reviewer]
"""
REPOSITORY = "shop"
OLD, NEW = "shop-v1", "shop-v2"
OLD_DIGEST, NEW_DIGEST = "sha256:" + "1" * 64, "sha256:" + "2" * 64


class Clock:
    """The ledger's `time.time()` while recording: set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@contextmanager
def ledger_clock(monkeypatch: pytest.MonkeyPatch, start: float) -> Iterator[Clock]:
    clock = Clock(start)
    fake = types.SimpleNamespace(time=clock.time)
    with monkeypatch.context() as patch:
        for module in (deploys_module, environments_module, history_module, releases_module):
            patch.setattr(module, "time", fake)
        yield clock


@dataclass(frozen=True)
class RecordedCanary:
    environment: str
    first_deploy: int
    canary_deploy: int


def _routes(weights: dict[str, int]) -> dict[str, object]:
    return {"backends": [{"release_id": r, "weight": w} for r, w in weights.items()]}


def _evidence(
    canary: tuple[int, int], baseline: tuple[int, int], e_promote: float
) -> dict[str, Any]:
    def arm(counts: tuple[int, int]) -> dict[str, int]:
        return {"requests": counts[0], "errors": counts[1], "slow": 0}

    return {
        "alpha": 0.05,
        "counts": {"canary": arm(canary), "baseline": arm(baseline), "stable": arm((0, 0))},
        "errors": {
            "reference": "baseline+stable",
            "e_rollback": round(1 / max(e_promote, 1.0), 4),
            "e_promote": e_promote,
            "confidence_sequence": {"level": 0.05, "low": 0.2, "high": 1.0 + 4 / e_promote},
            "hidden": {"ratio": 1.0 + 8 / e_promote, "rate": None},
        },
    }


def record_canary(
    store: Store, monkeypatch: pytest.MonkeyPatch, start: float, environment: str = "staging"
) -> RecordedCanary:
    """A first deploy of v1, then a canary of v2 promoted after two analyses."""
    ledger = store.ledger
    with ledger_clock(monkeypatch, start) as clock:
        ledger.environments.ensure(environment, 18080, 18081)
        first = ledger.deploys.begin(
            environment,
            release_id=OLD,
            repository=REPOSITORY,
            digest=OLD_DIGEST,
            ports=[18090],
            previous=None,
            actor="developer",
            run_id=None,
        )
        ledger.environments.set_intent(
            environment,
            routes=_routes({OLD: 100}),
            live=OLD,
            warm=None,
            event=EventKind.TRAFFIC_SHIFTED,
            actor="developer",
            data={"deploy_id": first.id, "why": "direct", "weights": {OLD: 100}},
            release_states={OLD: ReleaseState.SERVING},
        )
        ledger.deploys.finish(first.id, DeployState.SUCCEEDED, None)
        clock.now += 60
        canary = ledger.deploys.begin(
            environment,
            release_id=NEW,
            repository=REPOSITORY,
            digest=NEW_DIGEST,
            ports=[18091],
            previous=OLD,
            actor="developer",
            run_id=None,
        )
        steps: list[dict[str, Any]] = [
            {"weight": 10},
            {"analysis": {}},
            {"weight": 50},
            {"analysis": {}},
        ]
        e_value = 1.0
        for index, step in enumerate(steps):
            clock.now += 5
            ledger.history.record(
                EventKind.RELEASE_STEP,
                environment,
                deploy_id=canary.id,
                step=index,
                definition=step,
            )
            if "weight" in step:
                weight = int(step["weight"])
                weights = {NEW: weight, OLD: 100 - weight}
                ledger.environments.set_intent(
                    environment,
                    routes=_routes(weights),
                    live=OLD,
                    warm=None,
                    event=EventKind.TRAFFIC_SHIFTED,
                    actor="developer",
                    data={
                        "deploy_id": canary.id,
                        "why": f"canary step: {weight}%",
                        "weights": weights,
                    },
                )
                ledger.deploys.set_progress(
                    canary.id,
                    {"steps": len(steps), "step": index, "weight": weight, "phase": "started"},
                )
                continue
            for tick in range(1, 9):
                clock.now += 10
                e_value *= 1.9
                requests = tick * 40 * (1 if index == 1 else 5)
                verdict = "promote" if tick == 8 else "continue"
                reason = (
                    "no regression bigger than 2x hides in the canary's errors"
                    if verdict == "promote"
                    else f"{requests} canary requests: not enough evidence yet"
                )
                ledger.history.record(
                    EventKind.RELEASE_DECISION,
                    environment,
                    deploy_id=canary.id,
                    verdict=verdict,
                    reason=reason,
                    elapsed=tick * 10.0,
                    evidence=_evidence((requests, tick // 3), (requests, tick // 2), e_value),
                    events_needed=None,
                    requests_needed=None if verdict == "promote" else 400 - tick * 40,
                )
        clock.now += 5
        ledger.environments.set_intent(
            environment,
            routes=_routes({NEW: 100, OLD: 0}),
            live=NEW,
            warm=OLD,
            event=EventKind.TRAFFIC_SHIFTED,
            actor="developer",
            data={"deploy_id": canary.id, "why": "canary promoted", "weights": {NEW: 100, OLD: 0}},
            release_states={NEW: ReleaseState.SERVING, OLD: ReleaseState.WARM},
        )
        ledger.deploys.set_progress(
            canary.id,
            {
                "steps": len(steps),
                "step": len(steps) - 1,
                "weight": 100,
                "phase": "promoted",
                "verdict": "promote",
                "reason": "no regression bigger than 2x hides in the canary's errors",
                "guarantee": "a 2x error regression would have been caught at 20 req/s",
            },
        )
        ledger.deploys.finish(canary.id, DeployState.SUCCEEDED, None)
        end = clock.now
    _record_samples(store, environment, start, end)
    return RecordedCanary(environment, first.id, canary.id)


def _record_samples(store: Store, environment: str, start: float, end: float) -> None:
    """Cumulative router counters every 5 s: ~20 req/s, the canary's share growing."""
    rows = []
    totals = {OLD: [0, 0, 0.0], NEW: [0, 0, 0.0]}
    ts = start
    while ts <= end:
        share = 0.1 if ts < start + 160 else (0.5 if ts < end - 5 else 1.0)
        for release, part in ((OLD, 1 - share), (NEW, share)):
            if ts < start + 65 and release == NEW:
                continue
            count = int(100 * part)
            totals[release][0] += count
            totals[release][1] += count // 50
            totals[release][2] += count * (0.030 if release == OLD else 0.026)
            fast = int(totals[release][0] * 0.9)
            rows.append(
                SampleRow(
                    environment=environment,
                    release_id=release,
                    ts=ts,
                    weight=int(part * 100),
                    signals={
                        "release_id": release,
                        "requests": totals[release][0],
                        "responses_4xx": 0,
                        "responses_5xx": totals[release][1],
                        "connect_failures": 0,
                        "latency_buckets": {
                            "0.025": fast,
                            "0.05": totals[release][0],
                            "inf": totals[release][0],
                        },
                        "latency_sum": totals[release][2],
                    },
                    saturation=None,
                )
            )
        ts += 5
    store.ledger.samples.add(rows)


def waiting_run(store: Store, commit_sha: str, author: str) -> int:
    """A run (still running) of `commit_sha` by `author`, triggered by someone else."""
    run = NewRun(pipeline="shop", commit_sha=commit_sha, author=author, actor="ci-bot")
    return store.create_run(run, [])


def request_production(store: Store, run_id: int, repo: Path) -> ApprovalRequest:
    """The run's deploy job asks for production, as `approvals.gate` does."""
    return approvals_service.request_approval(
        store,
        run_id=run_id,
        environment="production",
        repository=REPOSITORY,
        digest=NEW_DIGEST,
        approval=Approval.model_validate({"roles": ["reviewer"]}),
        repo=repo,
    )


def put_image_with_sbom(
    project: Project,
    tag: str,
    env: list[str],
    components: list[tuple[str, str]],
    findings: list[str] | None = None,
) -> str:
    """An image of `REPOSITORY` in the project's image store, its OCI config's Env set,
    with a CycloneDX SBOM of `components` (name, version) attached and, given `findings`
    (advisory ids), a vulnerability scan, as the sign step attaches them; returns its
    digest."""
    from conveyor.service.images import image_store
    from conveyor.supply.attest import VULN_SCAN, Envelope, Statement, Subject, sbom_statement
    from conveyor.supply.oci.model import MANIFEST, Descriptor, Manifest
    from conveyor.supply.referrers import SBOM_ARTIFACT, VULN_SCAN_ARTIFACT, attach

    store = image_store(project)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": env}})
    layer = f"not really a tar, {tag}".encode()
    store.put_blob(REPOSITORY, config.encode())
    store.put_blob(REPOSITORY, layer)
    manifest = Manifest(
        config=Descriptor.of("application/vnd.oci.image.config.v1+json", config.encode()),
        layers=(Descriptor.of("application/vnd.oci.image.layer.v1.tar+gzip", layer),),
    )
    digest = store.put_manifest(REPOSITORY, manifest.to_bytes(), MANIFEST, (tag,))
    bom = {
        "bomFormat": "CycloneDX",
        "components": [
            {"type": "library", "name": name, "version": version} for name, version in components
        ],
    }
    statement = sbom_statement(REPOSITORY, digest, json.dumps(bom).encode())
    envelope = Envelope("application/vnd.in-toto+json", statement.to_bytes())
    attach(store, REPOSITORY, digest, envelope, SBOM_ARTIFACT)
    if findings is not None:
        scan = {"passed": True, "counts": {"high": len(findings)}, "findings": findings}
        subject = (Subject.of_image(REPOSITORY, digest),)
        envelope = Envelope(
            "application/vnd.in-toto+json", Statement(subject, VULN_SCAN, scan).to_bytes()
        )
        attach(store, REPOSITORY, digest, envelope, VULN_SCAN_ARTIFACT)
    return digest
