"""Kubernetes environments under the CLI: render an admitted release's objects, apply them,
read the Rollout back (deploy/kubernetes/, docs/kubernetes.md)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from conveyor.analysis.model import Decision, Verdict
from conveyor.analysis.providers.base import MetricsProvider, ProviderSite
from conveyor.clock import SYSTEM_CLOCK, Clock
from conveyor.deploy.kubernetes.apply import RolloutStatus
from conveyor.deploy.kubernetes.render import KubeRelease, Manifest, render
from conveyor.deploy.rollout import DeployOutcome, Progress, release_name
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.service.images import image_store, parse_ref, resolve, verify_image
from conveyor.service.project import Project
from conveyor.spec.strategy import Analysis, merged
from conveyor.states import DeployState
from conveyor.store.ledger import DeployRecord
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from conveyor.supply.oci.model import ImageRef

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


@dataclass(frozen=True)
class Applied:
    release: KubeRelease
    objects: list[dict[str, Any]]  # as the API server answered them
    status: RolloutStatus


def kube_release(project: Project, name: str, image: str) -> KubeRelease:
    """Environment `name`'s release of `image` (repository@digest or :tag), with the
    admission policy's verdict on its digest (the same check `conveyor deploy` makes)."""
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    pipeline = load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline
    spec = pipeline.environments.get(name)
    if spec is None:  # as service/environments.py says it (which imports this module)
        known = ", ".join(pipeline.environments) or "none"
        raise NotFoundError(
            f"no environment {name!r} in {project.spec_path.name} (environments: {known})",
            hint="declare it under `environments:` (docs/conveyor-yml.md)",
        )
    ref = parse_ref(image)
    digest = resolve(image_store(project), ref)
    admission = None
    if pipeline.images.admission is not None:
        pinned = ImageRef(name=ref.name, digest=digest)
        admission = verify_image(project, pinned, pipeline.images)[1]
    return KubeRelease(
        project=pipeline.name or project.directory.name,
        environment=name,
        spec=spec,
        repository=ref.name,
        digest=digest,
        release_id=release_name(name, ref.name, digest),
        admission=admission,
    )


def render_release(project: Project, name: str, image: str) -> list[Manifest]:
    return render(kube_release(project, name, image))


def apply_release(project: Project, name: str, image: str) -> Applied:
    """Render (refused for an unadmitted image), apply each object by server-side apply,
    and read the Rollout's status back."""
    from conveyor.deploy.kubernetes.apply import apply_all, connect, rollout_status

    release = kube_release(project, name, image)
    manifests = render(release)
    settings = release.settings
    client = connect(settings.kubeconfig, settings.context)
    with client:
        objects = apply_all(client, manifests)
        status = rollout_status(client, settings.namespace, release.name)
    return Applied(release, objects, status)


# --- `conveyor deploy` to a runtime: kubernetes environment -----------------------------

FOLLOW_INTERVAL = 2.0  # seconds between two reads of the Rollout's status
FOLLOW_MARGIN = 60.0  # beyond the strategy's own durations, for scheduling and pulls
CLOCK: Clock = SYSTEM_CLOCK  # the judge's windows


def deploy_to_cluster(
    project: Project,
    store: Store,
    name: str,
    repository: str,
    digest: str,
    *,
    actor: str,
    run_id: int | None = None,
    approval: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> DeployOutcome:
    """`conveyor deploy` where Argo Rollouts runs the release: record the deploy, apply
    the objects, then follow the Rollout until it is fully promoted (succeeded), aborted
    (Degraded: failed, Argo sent the traffic back) or out of time; at each analysis step,
    judge the release and record the verdicts that Argo's analysis reads."""
    from conveyor.deploy.kubernetes.apply import apply_all, connect

    say = progress or (lambda _text: None)
    release = kube_release(project, name, f"{repository}@{digest}")
    manifests = render(release)
    live = store.ledger.deploys.of_environment(name, DeployState.SUCCEEDED)
    deploy = store.ledger.deploys.begin(
        name,
        release_id=release.release_id,
        repository=repository,
        digest=digest,
        ports=[],
        previous=live[-1].release_id if live else None,
        actor=actor,
        run_id=run_id,
        approval=approval,
    )
    try:
        client = connect(release.settings.kubeconfig, release.settings.context)
        with client:
            for applied in apply_all(client, manifests):
                say(f"applied {applied.get('kind')}/{applied.get('metadata', {}).get('name')}")
            status = _Follower(client, release, store, deploy, say).follow()
    except ConveyorError as error:
        store.ledger.deploys.finish(deploy.id, DeployState.FAILED, error.message)
        raise
    state, reason = _outcome(status, follow_budget(release))
    store.ledger.deploys.finish(deploy.id, state, reason)
    hosts = release.settings.hostnames
    return DeployOutcome(
        deploy_id=deploy.id,
        release_id=release.release_id,
        state=state,
        reason=reason,
        url=f"http://{hosts[0]}" if hosts else "",
        report={"rollout": status.as_json()},
    )


def follow_budget(release: KubeRelease) -> float:
    """How long a deploy follows the Rollout: readiness, every timed pause and every
    analysis's maximum duration, and a margin. (An indefinite pause waits for a person:
    the deploy stops following at this budget.)"""
    budget = release.spec.health.ready_timeout + FOLLOW_MARGIN
    strategy = release.spec.strategy
    if strategy is None or strategy.rolling is not None:
        return budget
    canary = strategy.as_canary()
    for step in canary.steps:
        if isinstance(step.pause, float):
            budget += step.pause
        if step.analysis is not None:
            budget += merged(canary.analysis, step.analysis).max_duration
    return budget


def analysis_at(release: KubeRelease, index: int | None) -> Analysis | None:
    """The settings of the canary's step `index` when it is an analysis step."""
    strategy = release.spec.strategy
    if index is None or strategy is None or strategy.canary is None:
        return None
    canary = strategy.canary
    if not 0 <= index < len(canary.steps):
        return None
    step = canary.steps[index].analysis
    return merged(canary.analysis, step) if step is not None else None


def judge_provider(settings: Analysis, environment: str) -> MetricsProvider:
    """The metrics provider the judge reads on a cluster (a registered one, by name)."""
    from conveyor.analysis.providers.registry import PROVIDERS

    return PROVIDERS.create(settings.provider, ProviderSite(settings, environment))


@dataclass
class _Follower:
    client: ApiClient
    release: KubeRelease
    store: Store
    deploy: DeployRecord
    say: Progress
    shown: str | None = None

    def read(self) -> RolloutStatus:
        from conveyor.deploy.kubernetes.apply import rollout_status

        status = rollout_status(self.client, self.release.settings.namespace, self.release.name)
        line = (
            f"Rollout {status.phase or 'pending'}, step {status.current_step_index}/{status.steps}"
        )
        if status.canary_weight is not None:
            line += f", canary {status.canary_weight}%"
        if line != self.shown:
            self.say(line + (f": {status.message}" if status.message else ""))
            self.shown = line
        return status

    def follow(self) -> RolloutStatus:
        deadline = time.monotonic() + follow_budget(self.release)
        judged: set[int] = set()
        while True:
            status = self.read()
            if _finished(status) or time.monotonic() >= deadline:
                return status
            step = status.current_step_index
            settings = analysis_at(self.release, step)
            if settings is not None and step is not None and step not in judged:
                judged.add(step)
                self.judge(step, settings)
                continue
            time.sleep(FOLLOW_INTERVAL)

    def judge(self, step: int, settings: Analysis) -> None:
        from conveyor.analysis.polling import Arms
        from conveyor.deploy.kubernetes.judging import judge_step

        stable = self.deploy.previous_release
        if stable is None or settings.provider == "router":
            why = (
                "no stable release to compare with"
                if stable is None
                else ("provider: router reads Conveyor's router, which a cluster does not have")
            )
            self.say(f"judge: not run at step {step} ({why}): Argo's analysis gets `hold`")
            return
        provider = judge_provider(settings, self.release.environment)
        self.say(f"judge: {self.release.release_id} against {stable} at step {step}")
        judge_step(
            settings,
            provider,
            Arms(canary=self.release.release_id, stable=stable),
            CLOCK,
            record=self.record,
            still_at_step=lambda: self._at(step),
        )

    def _at(self, step: int) -> bool:
        status = self.read()
        return status.current_step_index == step and not _finished(status)

    def record(self, decision: Decision) -> None:
        self.store.ledger.history.record(
            EventKind.RELEASE_DECISION,
            self.release.environment,
            deploy_id=self.deploy.id,
            **decision.event_data(),
        )
        if decision.verdict is not Verdict.CONTINUE:
            self.say(f"judge: {decision.verdict.value}: {decision.reason}")


def _finished(status: RolloutStatus) -> bool:
    promoted = status.phase == "Healthy" and status.current_hash == status.stable_hash
    return promoted or status.phase == "Degraded"


def _outcome(status: RolloutStatus, budget: float) -> tuple[DeployState, str | None]:
    if status.phase == "Degraded":
        return DeployState.FAILED, f"Argo Rollouts aborted the release: {status.message}"
    if _finished(status):
        return DeployState.SUCCEEDED, None
    return DeployState.FAILED, (
        f"the Rollout was still {status.phase or 'pending'} after {budget:.0f}s (step "
        f"{status.current_step_index}/{status.steps}): Argo Rollouts keeps driving it; "
        "`kubectl argo rollouts get rollout` shows where it stands"
    )
