"""`conveyor flags release`: a flag's judged rollout, as conveyor.yml's environment says."""

from __future__ import annotations

from conveyor.analysis.business import BusinessGuard
from conveyor.analysis.providers.base import ProviderSite
from conveyor.analysis.providers.registry import PROVIDERS
from conveyor.errors import ConveyorError
from conveyor.flags.release import FlagRelease, FlagReleaseOutcome, Progress
from conveyor.flags.store import FlagLedger
from conveyor.observe.business import variant_guard
from conveyor.service import environments as environment_service
from conveyor.service.environments import environment_spec
from conveyor.service.project import Project
from conveyor.store.store import Store


def release_flag(
    project: Project,
    store: Store,
    environment: str,
    flag: str,
    *,
    actor: str,
    progress: Progress | None = None,
) -> FlagReleaseOutcome:
    spec = environment_spec(project, environment)
    settings = spec.flags
    if settings is None:
        raise ConveyorError(
            f"{environment} has no `flags:` settings to judge a rollout with",
            hint="set environments.<name>.flags.steps and .analysis (docs/flags.md), or "
            "use `conveyor flags rollout` for an unjudged percentage",
        )
    analysis = settings.analysis  # provider: prometheus, as the spec requires
    provider = PROVIDERS.create(analysis.provider, ProviderSite(analysis, environment))
    ledger = FlagLedger(store.engine)
    ledger.flag(environment, flag)  # a clear error for an unknown flag, before anything
    return FlagRelease(
        ledger,
        environment,
        flag,
        settings.steps,
        analysis,
        provider,
        actor=actor,
        stickiness=settings.stickiness,
        progress=progress or (lambda _message: None),
        business=lambda: _business_guard(project, store, environment, flag),
    ).run()


def _business_guard(
    project: Project, store: Store, environment: str, flag: str
) -> BusinessGuard | None:
    """The flag's users with it against those without, on the live release's counters."""
    spec = environment_spec(project, environment)
    if spec.business is None or not spec.business.guardrails:
        return None
    record = store.ledger.environments.get(environment)
    live = record.live_release if record is not None else None
    # Looked up at each call, not bound at import: the fake data plane of the tests
    # swaps the service's function, and a module imported meanwhile would keep the fake.
    runtime = environment_service.make_runtime(project, spec)
    return variant_guard(
        spec.business, runtime, environment, store.engine, flag=flag, live_release=live
    )
