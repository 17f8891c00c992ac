"""The canary strategy: a new version takes a small share of traffic beside a baseline of
the stable version, and a sequential judge decides, every interval, to go on, promote or
roll back.

    start canary + baseline (same replicas) ─ ready ─ smoke (pinned to the canary)
      └ steps: weight w (canary w%, baseline w%, stable the rest) │ pause │ analysis
          each interval: counts per arm ─ judge ─ person's commands ─ progress recorded
      └ full promotion (canary 100%, baseline stopped, stable warm) ─ bake (guardrails)
      └ confirm: canary live, stable warm

Any rollback verdict, breach or `conveyor release abort` sends all traffic to the stable
release at once (it never stopped) and stops the canary and the baseline after `drain`.
Progress (step, weights, last verdict) is recorded on the deploy, so `conveyor release
status` can show it and a controller that resumes the deploy starts again at its step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from conveyor.analysis.model import Decision, Verdict
from conveyor.analysis.polling import Arms, judged_windows
from conveyor.analysis.providers.base import MetricsProvider, Reading
from conveyor.deploy import routing
from conveyor.deploy.hooks import HookPhase
from conveyor.deploy.model import MatchRule
from conveyor.deploy.progress import CanaryProgress, Phase, load_progress
from conveyor.deploy.rollout import (
    DeployOutcome,
    RolloutContext,
    Superseded,
    baseline_name,
    weighted,
)
from conveyor.deploy.routing import Share, free_ports, version_of
from conveyor.deploy.smoke import SmokeResult, describe_failures, smoke_passed
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import (
    ABTest,
    Analysis,
    Canary,
    CanaryStep,
    OnInconclusive,
    merged,
)
from conveyor.states import DeployState
from conveyor.store.records import EventKind

_DECISION_EVERY = 10.0  # seconds between recorded CONTINUE verdicts (changes: at once)


class Command(StrEnum):
    PROMOTE = "promote"  # end the current pause or analysis step now
    ABORT = "abort"  # roll back now
    PAUSE = "pause"  # hold at this step (the judge still watches)
    RESUME = "resume"


class StepEnd(StrEnum):
    NEXT = "next"
    ABORT = "abort"


@dataclass
class Tally:
    """What the canary served: the demo's and the report's "requests the bad version
    served before rollback"."""

    requests: int = 0
    errors: int = 0
    first_traffic: float | None = None  # monotonic time the canary first had a share


@dataclass
class Watch:
    """The state of one watched step."""

    settings: Analysis
    started: float
    last_recorded: float | None = None
    last_verdict: Verdict | None = None
    paused: bool = False


class CanaryRollout:
    def __init__(
        self,
        ctx: RolloutContext,
        spec: Canary,
        provider: MetricsProvider,
        match: ABTest | None = None,
    ) -> None:
        assert ctx.previous is not None, "a canary is judged against a stable release"
        self.ctx = ctx
        self.stable: Share = ctx.previous
        self.spec = spec
        self.provider = provider
        # An A/B test: matching requests go to the new version while it has no share.
        self.matches: tuple[MatchRule, ...] = ()
        if match is not None:
            release_id = ctx.release.release_id
            self.matches = (MatchRule(release_id, match.value, match.header, match.cookie),)
        self.progress: CanaryProgress = load_progress(ctx.record.progress) or CanaryProgress()
        self.tally = Tally()
        self.weight = self.progress.weight
        self.baseline: Share | None = None
        self.command_cursor = self.progress.command_cursor
        self.decision: Decision | None = None

    # --- the whole rollout ------------------------------------------------------------

    def run(self, url: str) -> DeployOutcome:
        ctx = self.ctx
        try:
            self._start_releases()
        except ConveyorError as error:
            return self._abort(f"{error.message}", url, DeployState.FAILED)
        smoke: tuple[SmokeResult, ...] = ()
        try:
            if self.weight == 0:  # resumed at a weight, the canary is in the routes already
                self._reachable_by_version()
            pin = {ctx.pin_header(): version_of(ctx.record.digest)}
            smoke = tuple(ctx.smoke(url, headers=pin))
            if not smoke_passed(smoke):
                reason = "smoke tests of the canary failed: " + describe_failures(smoke)
                return self._abort(reason, url, DeployState.ROLLED_BACK, smoke=smoke)
            if self._steps_and_bake() is StepEnd.ABORT:
                return self._abort(self._reason(), url, DeployState.ROLLED_BACK, smoke)
            failure = ctx.run_hooks(HookPhase.AFTER_TRAFFIC)
            if failure is not None:
                return self._abort(failure, url, DeployState.ROLLED_BACK, smoke)
            ctx.confirm()
        except Superseded as error:
            self._save(phase=Phase.ROLLED_BACK)
            return ctx.superseded(error.message, url, smoke)
        return ctx.outcome(DeployState.SUCCEEDED, None, url, smoke, self._report())

    def _reachable_by_version(self) -> None:
        """The canary (and the baseline) in the route table with no share: requests pinned
        to its version (the smoke tests, a preview) reach it, nobody else does. A pin to
        a version the table lacks goes by weight: to the stable release."""
        shares = [self.ctx.new_share(0), weighted(self.stable, 100)]
        if self.baseline is not None:
            shares.insert(1, weighted(self.baseline, 0))
        self.ctx.set_traffic(shares, "canary reachable by its version only")

    def _steps_and_bake(self) -> StepEnd:
        if self.matches:
            self._route(0)  # matching requests reach the new version from the start
        first = self.progress.step or 0
        for index in range(first, len(self.spec.steps)):
            if self._run_step(index, self.spec.steps[index]) is StepEnd.ABORT:
                return StepEnd.ABORT
        self._promote_fully()
        if self.spec.bake > 0:
            return self._bake()
        return StepEnd.NEXT

    def _start_releases(self) -> None:
        ctx = self.ctx
        ctx.start_new()
        if self.spec.baseline:
            self.baseline = self._baseline_share()
            ctx.start_release(self.baseline.release_id)
        ctx.progress(f"waiting for {ctx.release.release_id} to be ready")
        ctx.wait_ready(ctx.release.release_id)
        if self.baseline is not None:
            ctx.wait_ready(self.baseline.release_id)
        self._save(phase=Phase.STARTED)

    def _baseline_share(self) -> Share:
        """The stable version again, as a release of its own beside the canary."""
        ctx = self.ctx
        stable = ctx.known_release(self.stable.release_id)
        assert stable is not None
        baseline_id = baseline_name(self.stable.release_id)
        known = ctx.known_release(baseline_id)
        ports = tuple(self.progress.baseline_ports) or (
            known.ports if known else free_ports(len(ctx.release.ports))
        )
        ctx.register_release(baseline_id, stable.repository, stable.digest, ports)
        self.progress.baseline_ports = list(ports)
        # A version of its own, so pinning the stable version reaches the stable release
        # (and HAProxy's pin rules, keyed by version, stay unambiguous).
        version = f"{self.stable.version}-baseline"
        return Share(baseline_id, version, routing.addresses(ports), 0)

    # --- steps ------------------------------------------------------------------------

    def _run_step(self, index: int, step: CanaryStep) -> StepEnd:
        self._save(step=index, paused=False)  # a pause belongs to the step it was made in
        self.ctx.record_event(
            EventKind.RELEASE_STEP,
            step=index,
            definition=step.model_dump(mode="json", exclude_none=True),
        )
        if step.weight is not None:
            self._route(step.weight)
            return StepEnd.NEXT
        if step.analysis is not None:
            settings = merged(self.spec.analysis, step.analysis)
            return self._watch(settings, until=None, analysis=True)
        pause = step.pause
        until = None if pause == "until-promoted" else float(pause or 0)
        self.ctx.progress(f"pause: {'until promoted' if until is None else f'{until:g} s'}")
        return self._watch(self.spec.analysis, until=until, analysis=False)

    def _route(self, weight: int) -> None:
        """Canary `weight`%, the baseline the same (at most the rest), stable the rest."""
        self.weight = weight
        base_weight = min(weight, 100 - weight) if self.baseline is not None else 0
        shares = [self.ctx.new_share(weight)]
        if self.baseline is not None:
            shares.append(weighted(self.baseline, base_weight))
        shares.append(weighted(self.stable, 100 - weight - base_weight))
        if weight > 0 and self.tally.first_traffic is None:
            self.tally.first_traffic = self.ctx.clock.monotonic()
        matches = self.matches if weight < 100 else ()
        why = f"A/B: {_describe(matches[0])}" if matches else f"canary step: {weight}%"
        self.ctx.set_traffic(shares, why, matches=matches)
        self._save(weight=weight)

    def _watch(self, settings: Analysis, *, until: float | None, analysis: bool) -> StepEnd:
        """Judge every interval until the step ends: promoted, timed out, or rolled back."""
        clock = self.ctx.clock
        watch = Watch(settings, started=clock.monotonic())
        arms = Arms(
            canary=self.ctx.release.release_id,
            stable=self.stable.release_id,
            baseline=self.baseline.release_id if self.baseline is not None else None,
        )
        guard = self.ctx.business_guard()
        for judged in judged_windows(settings, self.provider, arms, clock, guard=guard):
            # A rollback meanwhile ends the deploy now, not at its next change of traffic
            # (a pause until promoted would otherwise hold a superseded canary).
            self.ctx.check_superseded()
            self._count(judged.canary)
            decision = self.decision = judged.decision
            self._record_decision(watch, decision)
            end = self._commands(watch)
            if end is not None:
                return end
            if decision.verdict is Verdict.ROLLBACK:
                return StepEnd.ABORT
            if watch.paused:
                continue
            if analysis and decision.verdict is Verdict.PROMOTE:
                self.ctx.progress(f"promoted: {decision.reason}")
                self._save(guarantee=decision.reason)
                return StepEnd.NEXT
            if analysis and decision.verdict is Verdict.INCONCLUSIVE:
                end = self._inconclusive(watch)
                if end is not None:
                    return end
            if until is not None and clock.monotonic() - watch.started >= until:
                return StepEnd.NEXT
        raise AssertionError("judged_windows never ends")

    def _count(self, canary: Reading) -> None:
        self.tally.requests += canary.counts.requests
        self.tally.errors += canary.counts.errors

    def _inconclusive(self, watch: Watch) -> StepEnd | None:
        choice = watch.settings.inconclusive
        if choice is OnInconclusive.PROMOTE:  # the judge's rule does not hold: say so
            self.ctx.progress("inconclusive: promoted without the judge's guarantee")
            self._save(guarantee=None)
            return StepEnd.NEXT
        if choice is OnInconclusive.ROLLBACK:
            self.ctx.progress("inconclusive: rolled back")
            return StepEnd.ABORT
        if not watch.paused:
            self.ctx.progress("inconclusive: paused until `conveyor release promote` or `abort`")
            watch.paused = True
            self._save(paused=True)
        return None

    def _commands(self, watch: Watch) -> StepEnd | None:
        for event in self.ctx.commands(self.command_cursor):
            self.command_cursor = event.id
            command = Command(str(event.data["command"]))
            self.ctx.progress(f"{event.actor or 'someone'}: {command.value}")
            self._save(command_cursor=event.id)
            if command is Command.ABORT:
                self.decision = Decision(
                    Verdict.ROLLBACK, f"aborted by {event.actor}", watch.started
                )
                return StepEnd.ABORT
            if command is Command.PROMOTE:
                self._save(paused=False)  # going on now: no longer held
                return StepEnd.NEXT
            watch.paused = command is Command.PAUSE
            self._save(paused=watch.paused)
        return None

    def _record_decision(self, watch: Watch, decision: Decision) -> None:
        now = self.ctx.clock.monotonic()
        changed = decision.verdict is not watch.last_verdict
        recently = watch.last_recorded is not None and now - watch.last_recorded < _DECISION_EVERY
        if not changed and recently:
            return
        watch.last_verdict, watch.last_recorded = decision.verdict, now
        self.ctx.record_event(EventKind.RELEASE_DECISION, **decision.event_data())
        self._save(verdict=decision.verdict.value, reason=decision.reason)
        if changed:
            self.ctx.progress(f"judge: {decision.verdict.value}: {decision.reason}")

    # --- the end ----------------------------------------------------------------------

    def _promote_fully(self) -> None:
        """All traffic to the canary; the stable release stays warm; the baseline goes."""
        ctx = self.ctx
        ctx.set_traffic([ctx.new_share(100), weighted(self.stable, 0)], "canary promoted")
        self._save(weight=100, phase=Phase.PROMOTED, paused=False)
        if self.baseline is not None:
            ctx.stop_after_drain(self.baseline.release_id)
            ctx.retire(self.baseline.release_id)
            self.baseline = None

    def _bake(self) -> StepEnd:
        """The guardrails keep watching the fully promoted release for `bake` seconds."""
        self.ctx.progress(f"baking for {self.spec.bake:g} s (the previous release stays warm)")
        return self._watch(self.spec.analysis, until=self.spec.bake, analysis=False)

    def _abort(
        self,
        reason: str,
        url: str,
        state: DeployState,
        smoke: tuple[SmokeResult, ...] = (),
    ) -> DeployOutcome:
        """All traffic to the stable release now; canary and baseline stop after draining."""
        ctx = self.ctx
        switched = ctx.send_back(weighted(self.stable, 100), "rolled back", reason)
        ctx.progress(f"rolled back: all traffic on {self.stable.release_id} in {switched:.3f} s")
        report = {**self._report(), "switch_seconds": round(switched, 3)}
        ctx.finish(state, reason)
        ctx.stop_after_drain(ctx.record.release_id)
        if self.baseline is not None:  # the stable version again: retired, not failed
            ctx.stop_after_drain(self.baseline.release_id)
            ctx.retire(self.baseline.release_id)
        self._save(phase=Phase.ROLLED_BACK, **report)
        return ctx.outcome(state, reason, url, smoke, report)

    def _reason(self) -> str:
        if self.decision is None:
            return "rolled back"
        return self.decision.reason

    def _report(self) -> dict[str, Any]:
        detected = None
        if self.tally.first_traffic is not None and self.decision is not None:
            detected = round(self.ctx.clock.monotonic() - self.tally.first_traffic, 3)
        report: dict[str, Any] = {
            "canary_requests": self.tally.requests,
            "canary_errors": self.tally.errors,
            "seconds_with_traffic": detected,
        }
        if self.decision is not None:
            report["verdict"] = self.decision.verdict.value
            report["evidence"] = dict(self.decision.evidence)
        return report

    def _save(self, **changes: Any) -> None:
        progress = self.progress
        for name, value in changes.items():
            setattr(progress, name, value)
        progress.strategy, progress.steps = "canary", len(self.spec.steps)
        progress.updated = time.time()  # wall time: shown to people
        progress.command_cursor = self.command_cursor
        self.ctx.save_progress(progress.to_json())


def _describe(rule: MatchRule) -> str:
    where = f"header {rule.header}" if rule.header else f"cookie {rule.cookie}"
    return f"{where} = {rule.value} -> {rule.release_id}"


def from_context(ctx: RolloutContext) -> CanaryRollout:
    """The strategy table's factory for canary, blue-green and A/B (each a canary: see
    `Strategy.as_canary`), judged by the analysis settings' metrics provider."""
    strategy = ctx.strategy
    assert strategy is not None
    canary = strategy.as_canary()
    return CanaryRollout(ctx, canary, ctx.metrics_provider(canary.analysis), strategy.ab)
