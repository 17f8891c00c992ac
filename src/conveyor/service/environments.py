"""Environments under the CLI: deploy (admission, promotion order), rollback, status.

Each call builds the environment's controller from conveyor.yml: its runtime and router
backends, its ledger in the store, and its replicas' env and secrets.

    <state_dir>/runtime/                 the runtime's releases (shared by environments)
    <state_dir>/environments/<name>/     router/ (its process and routes), deploy.lock
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conveyor.analysis.providers.base import MetricsProvider, ProviderSite
from conveyor.analysis.providers.registry import PROVIDERS
from conveyor.deploy.controller import ReleaseController
from conveyor.deploy.exposition import exposition
from conveyor.deploy.locks import LockSite, environment_lock
from conveyor.deploy.model import ReplicaStatus, SignalRates, SignalSample
from conveyor.deploy.rollout import DeployOutcome, Progress, RollbackOutcome, Target
from conveyor.deploy.routers.base import Router, RouterSite
from conveyor.deploy.routers.registry import ROUTERS
from conveyor.deploy.routing import free_ports
from conveyor.deploy.runtimes.base import Runtime, RuntimeSite
from conveyor.deploy.runtimes.registry import RUNTIMES
from conveyor.deploy.sampler import DataPlane, stored_samples, to_row
from conveyor.deploy.signals import window_rates
from conveyor.engine.mask import Masker
from conveyor.engine.secrets import load_secrets
from conveyor.errors import ConveyorError, InfrastructureError, NotFoundError
from conveyor.observe.business import release_guard
from conveyor.service.images import image_store, parse_ref, resolve, verify_image
from conveyor.service.project import Project
from conveyor.spec.environments import Environment
from conveyor.spec.images import ImagesConfig
from conveyor.spec.strategy import Analysis
from conveyor.states import DeployState, ReleaseState
from conveyor.store.ledger import DeployRecord, EnvironmentRecord, HistoryEntry, Retention
from conveyor.store.store import Store
from conveyor.supply.oci.interpreter import check_interpreter, image_labels

_RATE_WINDOW = 1.0  # status compares with a sample at least this old


def environments_of(project: Project) -> dict[str, Environment]:
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    return dict(load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline.environments)


def spec_stamp(project: Project) -> tuple[int, int]:
    """What tells that conveyor.yml changed, without reading it: (mtime_ns, size)."""
    try:
        status = project.spec_path.stat()
    except OSError:
        return (0, 0)
    return (status.st_mtime_ns, status.st_size)


# conveyor.yml's environments by file, with the stamp they were read at.
_CURRENT: dict[Path, tuple[tuple[int, int], dict[str, Environment]]] = {}


def current_environments(project: Project) -> dict[str, Environment]:
    """`environments_of`, parsed again only when conveyor.yml changed: for what runs every
    second (the continuous watch and its consumers)."""
    stamp = spec_stamp(project)
    known = _CURRENT.get(project.spec_path)
    if known is None or known[0] != stamp:
        known = (stamp, environments_of(project))
        _CURRENT[project.spec_path] = known
    return known[1]


def environment_spec(
    project: Project, name: str, environments: Mapping[str, Environment] | None = None
) -> Environment:
    """The environment `name` of conveyor.yml (or of `environments`, already loaded)."""
    if environments is None:
        environments = environments_of(project)
    if name not in environments:
        known = ", ".join(environments) or "none"
        raise NotFoundError(
            f"no environment {name!r} in {project.spec_path.name} (environments: {known})",
            hint="declare it under `environments:` (docs/conveyor-yml.md)",
        )
    return environments[name]


def make_runtime(project: Project, spec: Environment) -> Runtime:
    site = RuntimeSite(root=project.state_dir / "runtime", images=image_store(project))
    return RUNTIMES.create(spec.runtime, site)


def make_router(project: Project, name: str, spec: Environment, store: Store) -> Router:
    folder = project.state_dir / "environments" / name / "router"
    folder.mkdir(parents=True, exist_ok=True)
    ledger = store.ledger
    record = ledger.environments.get(name) or ledger.environments.ensure(
        name, spec.port or free_ports(1)[0], free_ports(1)[0]
    )
    port, admin = record.port, record.admin_port
    if spec.port and port != spec.port:  # conveyor.yml names another port now
        ledger.environments.set_ports(name, spec.port, admin)
        port = spec.port
    origins = tuple(spec.feedback_origins)
    site = RouterSite(folder=folder, port=port, admin_port=admin, feedback_origins=origins)
    return ROUTERS.create(spec.router, site)


def make_provider(
    name: str, router: Router, runtime: Runtime, store: Store
) -> Callable[[Analysis], MetricsProvider]:
    """The judge's source of counts, per the analysis settings; router samples are kept in
    the store as the environment's golden-signal time series."""

    def keep(samples: list[SignalSample]) -> None:
        store.ledger.samples.add([to_row(sample) for sample in samples])

    plane = DataPlane(router, runtime, on_sample=keep)

    def provider(settings: Analysis) -> MetricsProvider:
        site = ProviderSite(settings, name, target=plane)
        return PROVIDERS.create(settings.provider, site)

    return provider


def controller(
    project: Project,
    store: Store,
    name: str,
    progress: Progress | None = None,
    spec: Environment | None = None,
    *,
    command_path: str | None = None,
) -> ReleaseController:
    spec = spec or environment_spec(project, name)
    secrets = load_secrets(
        spec.secrets, root=project.directory, environ=os.environ, environment=name
    )
    masker = Masker(secrets.values())
    store.mask_secrets(masker)  # nothing the ledger records holds them in clear
    runtime = make_runtime(project, spec)
    router = make_router(project, name, spec, store)
    kept = spec.samples
    store.ledger.samples.retain(name, Retention(kept.full, int(kept.every), kept.keep))
    target = Target(
        name=name,
        spec=spec,
        runtime=runtime,
        router=router,
        provider=make_provider(name, router, runtime, store),
        ledger=store.ledger,
        lock=environment_lock(LockSite(name, store.engine, project.state_dir)),
        replica_env={**spec.env, **secrets},
        mask=masker.mask_text,
        workdir=project.directory,
        command_path=command_path,
        data_dir=project.state_dir / "data" / name,
        business=lambda: release_guard(spec.business, runtime, name, store.engine),
    )
    return ReleaseController(target, _masking(progress, masker.mask_text))


def _masking(progress: Progress | None, mask: Callable[[str], str]) -> Progress | None:
    """What the controller says, with the environment's secrets masked (a crashed
    replica's last words may hold one)."""
    if progress is None:
        return None
    shown = progress
    return lambda text: shown(mask(text))


# --- deploy and rollback --------------------------------------------------------------


def deploy(
    project: Project,
    store: Store,
    name: str,
    image: str,
    *,
    actor: str,
    run_id: int | None = None,
    progress: Progress | None = None,
    command_path: str | None = None,
) -> DeployOutcome:
    """Deploy `image` (repository@digest or repository:tag) to environment `name`.

    An environment with `approval:` takes only a digest with an approved request. Smoke
    commands run with `command_path` as PATH when given (the deploying job's)."""
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    # Read once for the whole deploy.
    pipeline = load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline
    spec = environment_spec(project, name, pipeline.environments)
    ref = parse_ref(image)
    digest = resolve(image_store(project), ref)
    if spec.after is not None and not store.ledger.deploys.succeeded_digest(spec.after, digest):
        raise ConveyorError(
            f"{ref.name}@{digest[:19]} has not been deployed to {spec.after} yet: "
            f"{name} comes after {spec.after}",
            hint=f"`conveyor deploy {spec.after} {ref.name}@{digest}` first",
        )
    approval = None
    if spec.approval is not None:  # the no-bypass check: approvals.md
        from conveyor.service.approvals import approval_used, require_approved

        approval = approval_used(require_approved(store, name, ref.name, digest))
    if pipeline.contracts.declared:  # the contract gate (docs/contracts.md)
        from conveyor.service.contracts import contract_gate

        service = pipeline.name or project.directory.name
        contract_gate(
            project,
            store,
            contracts=pipeline.contracts,
            service=service,
            digest=digest,
            environment=name,
        )
    _admit(project, pipeline.images, ref.name, digest)
    if spec.runtime == "kubernetes":  # Argo Rollouts runs the release (docs/kubernetes.md)
        from conveyor.service.kubernetes import deploy_to_cluster

        return deploy_to_cluster(
            project,
            store,
            name,
            ref.name,
            digest,
            actor=actor,
            run_id=run_id,
            approval=approval,
            progress=progress,
        )
    labels = image_labels(image_store(project), ref.name, digest)
    check_interpreter(labels, f"{ref.name}@{digest}")  # before anything is recorded
    control = controller(project, store, name, progress, spec, command_path=command_path)
    outcome = control.deploy(ref.name, digest, actor, run_id, approval)
    # The reason may quote a replica's last words or a check's output: no secret shown.
    reason = outcome.reason and control.target.mask(outcome.reason)
    return replace(outcome, reason=reason)


def _admit(project: Project, config: ImagesConfig, repository: str, digest: str) -> None:
    from conveyor.supply.oci.model import ImageRef

    if config.admission is None:
        return  # no policy in conveyor.yml: nothing to enforce (docs/images.md)
    _, decision = verify_image(project, ImageRef(name=repository, digest=digest), config)
    if not decision.admitted:
        reasons = "; ".join(f"{c.name}: {c.detail}" for c in decision.failed)
        raise ConveyorError(
            f"admission refused {repository}@{digest[:19]}: {reasons}",
            hint=f"`conveyor image verify {repository}@{digest}` shows every check",
        )


def rollback(
    project: Project,
    store: Store,
    name: str,
    *,
    actor: str,
    to: str | None = None,
    progress: Progress | None = None,
    reason: str = "requested",
    evidence: Mapping[str, Any] | None = None,
) -> RollbackOutcome:
    """`evidence` (an alert) is recorded in the rollback's event."""
    return controller(project, store, name, progress).rollback(actor, to, reason, evidence)


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseView:
    release_id: str
    digest: str
    state: ReleaseState
    weight: int
    replicas: list[ReplicaStatus]
    rates: SignalRates | None


@dataclass(frozen=True)
class EnvironmentView:
    name: str
    url: str | None
    runtime: str
    router: str
    live_release: str | None
    warm_release: str | None
    deploying: DeployRecord | None
    releases: list[ReleaseView]
    # `conveyor env stop` stopped it: its live and warm releases come back with
    # `conveyor env reconcile` (or a deploy replaces them).
    stopped: bool = False


def list_environments(project: Project, store: Store) -> list[EnvironmentView]:
    """Every declared environment, from the store only (no router or runtime calls)."""
    views = []
    for name, spec in environments_of(project).items():
        record = store.ledger.environments.get(name)
        in_progress = store.ledger.deploys.of_environment(name, DeployState.IN_PROGRESS)
        views.append(
            EnvironmentView(
                name=name,
                url=f"http://127.0.0.1:{record.port}" if record else None,
                runtime=spec.runtime,
                router=spec.router,
                live_release=record.live_release if record else None,
                warm_release=record.warm_release if record else None,
                deploying=in_progress[-1] if in_progress else None,
                releases=[],
                stopped=record is not None and _is_stopped(store, record),
            )
        )
    return views


def _is_stopped(store: Store, record: EnvironmentRecord) -> bool:
    """`env stop` stopped it: the ledger marks its live release so until it runs again."""
    if record.live_release is None:
        return False
    live = store.ledger.releases.get(record.live_release, record.name)
    return live is not None and live.state is ReleaseState.STOPPED


def _stopped_view(store: Store, spec: Environment, record: EnvironmentRecord) -> EnvironmentView:
    """A stopped environment, from the store alone: its router and replicas are gone."""
    releases = []
    for release_id in (record.live_release, record.warm_release):
        release = store.ledger.releases.get(release_id, record.name) if release_id else None
        if release is not None:
            views = ReleaseView(release.release_id, release.digest, release.state, 0, [], None)
            releases.append(views)
    return EnvironmentView(
        name=record.name,
        url=f"http://127.0.0.1:{record.port}",
        runtime=spec.runtime,
        router=spec.router,
        live_release=record.live_release,
        warm_release=record.warm_release,
        deploying=None,
        releases=releases,
        stopped=True,
    )


def environment_status(project: Project, store: Store, name: str) -> EnvironmentView:
    """Live: the router's weights, each release's replicas, golden signals over ~1 s."""
    spec = environment_spec(project, name)
    record = store.ledger.environments.get(name)
    if record is None:
        raise NotFoundError(
            f"{name} has never been deployed", hint=f"`conveyor deploy {name} IMAGE` first"
        )
    if _is_stopped(store, record):
        return _stopped_view(store, spec, record)
    control = controller(project, store, name, spec=spec)
    target = control.target
    control.import_replica_events()
    try:
        rates = _current_rates(control)
        weights = {b.release_id: b.weight for b in target.router.routes().backends}
    except (InfrastructureError, OSError) as error:  # its router died (a reboot, a kill)
        said = error.message if isinstance(error, InfrastructureError) else str(error)
        raise InfrastructureError(
            f"{name}'s router does not answer: {said}",
            hint=f"`conveyor env reconcile {name}` starts its router and releases again",
        ) from None
    running = set(target.runtime.releases())
    views = []
    for release in reversed(store.ledger.releases.of_environment(name)):
        if release.release_id not in running and release.release_id not in weights:
            continue
        replicas = (
            target.runtime.status(release.release_id) if release.release_id in running else []
        )
        views.append(
            ReleaseView(
                release_id=release.release_id,
                digest=release.digest,
                state=release.state,
                weight=weights.get(release.release_id, 0),
                replicas=replicas,
                rates=rates.get(release.release_id),
            )
        )
    in_progress = store.ledger.deploys.of_environment(name, DeployState.IN_PROGRESS)
    return EnvironmentView(
        name=name,
        url=f"http://127.0.0.1:{record.port}",
        runtime=target.spec.runtime,
        router=target.spec.router,
        live_release=record.live_release,
        warm_release=record.warm_release,
        deploying=in_progress[-1] if in_progress else None,
        releases=views,
    )


def _current_rates(control: ReleaseController) -> dict[str, SignalRates]:
    """Rates since each release's newest stored sample at least `_RATE_WINDOW` old (else
    its oldest one); a routed release with none is sampled, then again a window later."""
    target = control.target
    threshold = time.time() - _RATE_WINDOW
    before: dict[str, SignalSample] = {}
    for sample in reversed(stored_samples(target.ledger, target.name, since=threshold - 300)):
        kept = before.get(sample.release_id)
        if kept is None or kept.ts > threshold:  # newest first: older replaces too young
            before[sample.release_id] = sample
    routed = {backend.release_id for backend in target.router.routes().backends}
    if not before or not routed <= before.keys():
        before = {**{s.release_id: s for s in _sample(control)}, **before}
        time.sleep(_RATE_WINDOW)
    now = _sample(control)
    return {
        s.release_id: window_rates(before[s.release_id], s) for s in now if s.release_id in before
    }


def _sample(control: ReleaseController) -> list[SignalSample]:
    return control.sample()


def history(project: Project, store: Store, name: str) -> list[HistoryEntry]:
    environment_spec(project, name)
    return store.ledger.history.entries(name)


def metrics(project: Project, store: Store, name: str) -> bytes:
    """The environment's golden signals in the Prometheus text format (a fresh sample)."""
    spec = environment_spec(project, name)
    if store.ledger.environments.get(name) is None:
        return exposition(name, [])  # never deployed: no router to ask
    return exposition(name, _sample(controller(project, store, name, spec=spec)))


def reconcile(
    project: Project, store: Store, name: str, progress: Progress | None = None
) -> DeployOutcome | None:
    return controller(project, store, name, progress).reconcile()


def orphaned(project: Project, store: Store) -> list[str]:
    """Environments with a deploy in progress that no controller drives: its lock is free
    (its controller died, or lost its database session). A probe, without taking the lock
    or building a controller: `reconcile` takes the lock, and may find it taken meanwhile."""
    names = sorted({record.environment for record in store.ledger.deploys.in_progress()})
    return [name for name in names if _lock_is_free(project, store, name)]


def _lock_is_free(project: Project, store: Store, name: str) -> bool:
    return environment_lock(LockSite(name, store.engine, project.state_dir)).is_free()


def stop_environment(
    project: Project, store: Store, name: str, actor: str | None = None
) -> list[str]:
    spec = environment_spec(project, name)
    if store.ledger.environments.get(name) is None:
        return []  # never deployed: nothing runs
    return controller(project, store, name, spec=spec).stop_all(actor)


def state_path(project: Project, name: str) -> Path:
    return project.state_dir / "environments" / name
