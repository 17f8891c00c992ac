"""The judge on a Kubernetes release: while Argo Rollouts holds the Rollout at an analysis
step, Conveyor's judge reads the canary and the stable release from the metrics provider
(`provider: prometheus`: on a cluster there is no Conveyor router to count requests) and
records each verdict; the AnalysisTemplate's web metric reads the latest one
(server/api/judge.py). The same polling loop as Conveyor's own canaries (analysis/polling.py).
"""

from __future__ import annotations

from collections.abc import Callable

from conveyor.analysis.model import Decision, Verdict
from conveyor.analysis.polling import Arms, judged_windows
from conveyor.analysis.providers.base import MetricsProvider
from conveyor.clock import Clock
from conveyor.spec.strategy import Analysis


def judge_step(
    settings: Analysis,
    provider: MetricsProvider,
    arms: Arms,
    clock: Clock,
    *,
    record: Callable[[Decision], None],
    still_at_step: Callable[[], bool],
) -> Decision | None:
    """Judge window after window until a final verdict (promote, rollback, inconclusive),
    recording each decision; None if Argo Rollouts left the step first (a person promoted
    or aborted it)."""
    for judged in judged_windows(settings, provider, arms, clock):
        if not still_at_step():
            return None
        record(judged.decision)
        if judged.decision.verdict is not Verdict.CONTINUE:
            return judged.decision
    return None  # pragma: no cover (judged_windows never ends)
