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

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from conveyor.analysis.judge import Judge, Reference
from conveyor.analysis.model import Absolute, Counts, Decision, Observation, Verdict
from conveyor.analysis.providers.base import MetricsProvider, Reading
from conveyor.deploy import routing
from conveyor.deploy.model import MatchRule, ReleaseSpec
from conveyor.deploy.routing import Share, free_ports, version_of
from conveyor.deploy.smoke import SmokeResult, describe_failures, smoke_passed
from conveyor.errors import ConveyorError
from conveyor.spec.strategy import ABTest, Analysis, Canary, CanaryStep, OnInconclusive, merged
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind

if TYPE_CHECKING:
    from conveyor.deploy.controller import DeployOutcome, ReleaseController


_DECISION_EVERY = 10.0  # seconds between recorded CONTINUE verdicts (changes: at once)
DEFAULT_LATENCY_THRESHOLD = 0.25


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

    judge: Judge
    settings: Analysis
    started: float = field(default_factory=time.monotonic)
    last_recorded: float = 0.0
    last_verdict: Verdict | None = None
    paused: bool = False


class CanaryRollout:
    def __init__(  # noqa: PLR0917 - the parts of one rollout, each used throughout
        self,
        controller: ReleaseController,
        record: DeployRecord,
        release: ReleaseSpec,
        stable: Share,
        spec: Canary,
        provider: MetricsProvider,
        match: ABTest | None = None,
    ) -> None:
        self.c = controller
        self.record = record
        self.release = release
        self.stable = stable
        self.spec = spec
        self.provider = provider
        # An A/B test: matching requests go to the new version while it has no share.
        self.matches: tuple[MatchRule, ...] = ()
        if match is not None:
            self.matches = (MatchRule(release.release_id, match.value, match.header, match.cookie),)
        self.progress: dict[str, Any] = dict(record.progress or {})
        self.tally = Tally()
        self.weight = int(self.progress.get("weight", 0))
        self.baseline: Share | None = None
        self.command_cursor = int(self.progress.get("command_cursor", 0))
        self.decision: Decision | None = None

    # --- the whole rollout ------------------------------------------------------------

    def run(self, url: str) -> DeployOutcome:
        from conveyor.deploy.controller import DeployOutcome, Superseded

        c, record = self.c, self.record
        try:
            self._start_releases()
        except ConveyorError as error:
            return self._abort(f"{error.message}", url, DeployState.FAILED)
        smoke: tuple[SmokeResult, ...] = ()
        try:
            if self.weight == 0:  # resumed at a weight, the canary is in the routes already
                self._reachable_by_version()
            version = version_of(record.digest)
            pin = {c.target.router.routes().pin_header: version}
            smoke = tuple(c.smoke(record, url, headers=pin))
            if not smoke_passed(smoke):
                reason = "smoke tests of the canary failed: " + describe_failures(smoke)
                return self._abort(reason, url, DeployState.ROLLED_BACK, smoke=smoke)
            if self._steps_and_bake() is StepEnd.ABORT:
                return self._abort(self._reason(), url, DeployState.ROLLED_BACK, smoke)
            c.confirm(record, self.release)
        except Superseded as error:
            return self._superseded(error.message, url, smoke)
        report = self._report()
        return DeployOutcome(
            record.id, record.release_id, DeployState.SUCCEEDED, None, url, tuple(smoke), report
        )

    def _reachable_by_version(self) -> None:
        """The canary (and the baseline) in the route table with no share: requests pinned
        to its version (the smoke tests, a preview) reach it, nobody else does. A pin to
        a version the table lacks goes by weight: to the stable release."""
        shares = [self._canary_share(0), _weighted(self.stable, 100)]
        if self.baseline is not None:
            shares.insert(1, _weighted(self.baseline, 0))
        self.c.set_traffic(shares, self.record, "canary reachable by its version only")

    def _canary_share(self, weight: int) -> Share:
        release = self.release
        addresses = routing.addresses(release.ports)
        return Share(release.release_id, version_of(release.digest), addresses, weight)

    def _steps_and_bake(self) -> StepEnd:
        if self.matches:
            self._route(0)  # matching requests reach the new version from the start
        first = int(self.progress.get("step", 0))
        for index in range(first, len(self.spec.steps)):
            if self._run_step(index, self.spec.steps[index]) is StepEnd.ABORT:
                return StepEnd.ABORT
        self._promote_fully()
        if self.spec.bake > 0:
            return self._bake()
        return StepEnd.NEXT

    def _start_releases(self) -> None:
        c = self.c
        c.target.runtime.start(self.release)
        if self.spec.baseline:
            self.baseline = self._baseline_share()
            c.start_release(self.baseline.release_id)
        timeout = c.target.spec.health.ready_timeout
        self.c.progress(f"waiting for {self.release.release_id} to be ready")
        c.target.runtime.wait_ready(self.release.release_id, timeout)
        if self.baseline is not None:
            c.target.runtime.wait_ready(self.baseline.release_id, timeout)
        self._save(phase="started")

    def _baseline_share(self) -> Share:
        """The stable version again, as a release of its own beside the canary."""
        from conveyor.deploy.controller import baseline_name

        c = self.c
        stable = c.target.ledger.releases.get(self.stable.release_id, c.target.name)
        assert stable is not None
        baseline_id = baseline_name(self.stable.release_id)
        known = c.target.ledger.releases.get(baseline_id, c.target.name)
        ports = tuple(self.progress.get("baseline_ports") or ()) or (
            known.ports if known else free_ports(len(self.release.ports))
        )
        c.target.ledger.releases.register(
            c.target.name, baseline_id, stable.repository, stable.digest, ports
        )
        self.progress["baseline_ports"] = list(ports)
        # A version of its own, so pinning the stable version reaches the stable release
        # (and HAProxy's pin rules, keyed by version, stay unambiguous).
        version = f"{self.stable.version}-baseline"
        return Share(baseline_id, version, routing.addresses(ports), 0)

    # --- steps ------------------------------------------------------------------------

    def _run_step(self, index: int, step: CanaryStep) -> StepEnd:
        self._save(step=index)
        self.c.target.ledger.history.record(
            EventKind.RELEASE_STEP,
            self.c.target.name,
            deploy_id=self.record.id,
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
        self.c.progress(f"pause: {'until promoted' if until is None else f'{until:g} s'}")
        return self._watch(self.spec.analysis, until=until, analysis=False)

    def _route(self, weight: int) -> None:
        """Canary `weight`%, the baseline the same (at most the rest), stable the rest."""
        self.weight = weight
        canary = self._canary_share(weight)
        base_weight = min(weight, 100 - weight) if self.baseline is not None else 0
        shares = [canary]
        if self.baseline is not None:
            shares.append(_weighted(self.baseline, base_weight))
        shares.append(_weighted(self.stable, 100 - weight - base_weight))
        if weight > 0 and self.tally.first_traffic is None:
            self.tally.first_traffic = time.monotonic()
        matches = self.matches if weight < 100 else ()
        why = f"A/B: {_describe(matches[0])}" if matches else f"canary step: {weight}%"
        self.c.set_traffic(shares, self.record, why, matches=matches)
        self._save(weight=weight)

    def _watch(self, settings: Analysis, *, until: float | None, analysis: bool) -> StepEnd:
        """Judge every interval until the step ends: promoted, timed out, or rolled back."""
        judge = Judge(
            settings,
            reference=Reference(settings.reference.value),
            negligible_rate=settings.negligible_rate,
        )
        watch = Watch(judge, settings)
        arms = [self.release.release_id, self.stable.release_id]
        if self.baseline is not None:
            arms.append(self.baseline.release_id)
        self.provider.start(arms, settings.latency_threshold or DEFAULT_LATENCY_THRESHOLD)
        while True:
            time.sleep(settings.interval)
            decision = watch.judge.observe(self._observation(watch))
            self.decision = decision
            self._record_decision(watch, decision)
            end = self._commands(watch)
            if end is not None:
                return end
            if decision.verdict is Verdict.ROLLBACK:
                return StepEnd.ABORT
            if watch.paused:
                continue
            if analysis and decision.verdict is Verdict.PROMOTE:
                return StepEnd.NEXT
            if analysis and decision.verdict is Verdict.INCONCLUSIVE:
                end = self._inconclusive(watch)
                if end is not None:
                    return end
            if until is not None and time.monotonic() - watch.started >= until:
                return StepEnd.NEXT

    def _inconclusive(self, watch: Watch) -> StepEnd | None:
        choice = watch.settings.inconclusive
        if choice is OnInconclusive.PROMOTE:
            return StepEnd.NEXT
        if choice is OnInconclusive.ROLLBACK:
            return StepEnd.ABORT
        if not watch.paused:
            self.c.progress("inconclusive: paused until `conveyor release promote` or `abort`")
            watch.paused = True
            self._save(paused=True)
        return None

    def _observation(self, watch: Watch) -> Observation:
        readings = self.provider.read()
        canary = _reading(readings, self.release.release_id)
        self.tally.requests += canary.counts.requests
        self.tally.errors += canary.counts.errors
        baseline_id = self.baseline.release_id if self.baseline is not None else ""
        return Observation(
            elapsed=time.monotonic() - watch.started,
            canary=canary.counts,
            baseline=_reading(readings, baseline_id).counts,
            stable=_reading(readings, self.stable.release_id).counts,
            canary_absolute=canary.absolute,
        )

    def _commands(self, watch: Watch) -> StepEnd | None:
        for event in self.c.target.ledger.deploys.commands(self.record.id, self.command_cursor):
            self.command_cursor = event.id
            command = Command(str(event.data["command"]))
            self.c.progress(f"{event.actor or 'someone'}: {command.value}")
            self._save(command_cursor=event.id)
            if command is Command.ABORT:
                self.decision = Decision(
                    Verdict.ROLLBACK, f"aborted by {event.actor}", watch.started
                )
                return StepEnd.ABORT
            if command is Command.PROMOTE:
                return StepEnd.NEXT
            watch.paused = command is Command.PAUSE
            self._save(paused=watch.paused)
        return None

    def _record_decision(self, watch: Watch, decision: Decision) -> None:
        now = time.monotonic()
        changed = decision.verdict is not watch.last_verdict
        if not changed and now - watch.last_recorded < _DECISION_EVERY:
            return
        watch.last_verdict, watch.last_recorded = decision.verdict, now
        data: dict[str, Any] = {
            "deploy_id": self.record.id,
            "verdict": decision.verdict.value,
            "reason": decision.reason,
            "elapsed": round(decision.elapsed, 3),
            "evidence": dict(decision.evidence),
            "events_needed": decision.events_needed,
            "requests_needed": decision.requests_needed,
        }
        self.c.target.ledger.history.record(EventKind.RELEASE_DECISION, self.c.target.name, **data)
        self._save(verdict=decision.verdict.value, reason=decision.reason)
        if changed:
            self.c.progress(f"judge: {decision.verdict.value}: {decision.reason}")

    # --- the end ----------------------------------------------------------------------

    def _promote_fully(self) -> None:
        """All traffic to the canary; the stable release stays warm; the baseline goes."""
        canary = self._canary_share(100)
        self.c.set_traffic([canary, _weighted(self.stable, 0)], self.record, "canary promoted")
        self._save(weight=100, phase="promoted")
        if self.baseline is not None:
            self.c.stop_after_drain(self.baseline.release_id)
            self.c.target.ledger.releases.set_state(
                self.c.target.name, self.baseline.release_id, ReleaseState.RETIRED
            )
            self.baseline = None

    def _bake(self) -> StepEnd:
        """The guardrails keep watching the fully promoted release for `bake` seconds."""
        self.c.progress(f"baking for {self.spec.bake:g} s (the previous release stays warm)")
        return self._watch(self.spec.analysis, until=self.spec.bake, analysis=False)

    def _abort(
        self,
        reason: str,
        url: str,
        state: DeployState,
        smoke: tuple[Any, ...] = (),
    ) -> DeployOutcome:
        """All traffic to the stable release now; canary and baseline stop after draining."""
        from conveyor.deploy.controller import DeployOutcome

        c = self.c
        switched = c.send_back(self.record, _weighted(self.stable, 100), "rolled back", reason)
        c.progress(f"rolled back: all traffic on {self.stable.release_id} in {switched:.3f} s")
        report = {**self._report(), "switch_seconds": round(switched, 3)}
        c.target.ledger.deploys.finish(self.record.id, state, reason)
        c.stop_after_drain(self.record.release_id)
        if self.baseline is not None:  # the stable version again: retired, not failed
            c.stop_after_drain(self.baseline.release_id)
            c.target.ledger.releases.set_state(
                c.target.name, self.baseline.release_id, ReleaseState.RETIRED
            )
        self._save(phase="rolled back", **report)
        return DeployOutcome(
            self.record.id, self.record.release_id, state, reason, url, smoke, report
        )

    def _superseded(self, reason: str, url: str, smoke: tuple[Any, ...]) -> DeployOutcome:
        """A rollback changed the intent meanwhile: it stands, and the canary and its
        baseline stop (unless the rollback went to one of them)."""
        from conveyor.deploy.controller import DeployOutcome

        self.c.target.ledger.deploys.finish(self.record.id, DeployState.ROLLED_BACK, reason)
        self.c.stop_strays()
        self._save(phase="rolled back")
        return DeployOutcome(
            self.record.id, self.record.release_id, DeployState.ROLLED_BACK, reason, url, smoke
        )

    def _reason(self) -> str:
        if self.decision is None:
            return "rolled back"
        return self.decision.reason

    def _report(self) -> dict[str, Any]:
        detected = None
        if self.tally.first_traffic is not None and self.decision is not None:
            detected = round(time.monotonic() - self.tally.first_traffic, 3)
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
        self.progress.update(changes, strategy="canary", steps=len(self.spec.steps))
        self.progress["updated"] = time.time()
        self.progress["command_cursor"] = self.command_cursor
        self.c.target.ledger.deploys.set_progress(self.record.id, _plain(self.progress))


def _describe(rule: MatchRule) -> str:
    where = f"header {rule.header}" if rule.header else f"cookie {rule.cookie}"
    return f"{where} = {rule.value} -> {rule.release_id}"


def _weighted(share: Share, weight: int) -> Share:
    return Share(share.release_id, share.version, share.addresses, weight)


def _reading(readings: Mapping[str, Reading], release_id: str) -> Reading:
    return readings.get(release_id) or Reading(Counts(), Absolute(), 0.0)


def _plain(value: Any) -> Any:
    """JSON-safe: numbers that are not finite become strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
