"""The judge's verdict on a release, as an outside rollout controller asks for it.

Argo Rollouts' `web` metric (and a Flagger webhook) polls this between steps: the latest
verdict the judge recorded for the environment's deploy of the release, in three words a
condition can test: `promote`, `hold` (keep watching) or `rollback`. The judge's
`inconclusive` (its maximum duration passed) becomes what the strategy's `inconclusive:`
says; no verdict yet is `hold`, never `promote`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from conveyor.analysis.model import Verdict
from conveyor.service.environments import environment_spec
from conveyor.service.project import Project
from conveyor.spec.strategy import OnInconclusive
from conveyor.store.records import EventKind
from conveyor.store.store import Store


class Answer(StrEnum):
    PROMOTE = "promote"
    HOLD = "hold"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class JudgeAnswer:
    environment: str
    release: str | None
    deploy_id: int | None
    verdict: Answer
    judge_verdict: str | None  # as the judge recorded it: continue, promote, ...
    reason: str
    decided_at: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def judge_answer(project: Project, store: Store, name: str, release: str | None) -> JudgeAnswer:
    """The latest recorded verdict on `release` (default: the latest deploy) in `name`."""
    spec = environment_spec(project, name)
    deploys = store.ledger.deploys.of_environment(name)
    if release is not None:
        deploys = [d for d in deploys if d.release_id == release]
    if not deploys:
        what = f"release {release}" if release else "any release"
        reason = f"no deploy of {what} is recorded in {name}: the judge has nothing to judge"
        return JudgeAnswer(name, release, None, Answer.HOLD, None, reason)
    deploy = deploys[-1]
    ours = store.ledger.history.events(name, (EventKind.RELEASE_DECISION,), deploy_id=deploy.id)
    if not ours:
        reason = "the judge has not spoken on this release yet"
        return JudgeAnswer(name, deploy.release_id, deploy.id, Answer.HOLD, None, reason)
    last = ours[-1]
    recorded = str(last.data.get("verdict", ""))
    on_inconclusive = (
        spec.strategy.as_canary().analysis.inconclusive
        if spec.strategy is not None
        else OnInconclusive.PAUSE
    )
    return JudgeAnswer(
        environment=name,
        release=deploy.release_id,
        deploy_id=deploy.id,
        verdict=_answer(recorded, on_inconclusive),
        judge_verdict=recorded,
        reason=str(last.data.get("reason", "")),
        decided_at=last.ts,
        evidence=dict(last.data.get("evidence") or {}),
    )


def _answer(recorded: str, on_inconclusive: OnInconclusive) -> Answer:
    if recorded == Verdict.PROMOTE.value:
        return Answer.PROMOTE
    if recorded == Verdict.ROLLBACK.value:
        return Answer.ROLLBACK
    if recorded == Verdict.INCONCLUSIVE.value and on_inconclusive is not OnInconclusive.PAUSE:
        return Answer(on_inconclusive.value)
    return Answer.HOLD  # continue, inconclusive with a person to decide, or unknown
