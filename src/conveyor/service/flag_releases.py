"""`conveyor flags release`: a flag's judged rollout, as conveyor.yml's environment says."""

from __future__ import annotations

from conveyor.analysis.providers.base import ProviderSite
from conveyor.analysis.providers.registry import PROVIDERS
from conveyor.errors import ConveyorError
from conveyor.flags.release import FlagRelease, FlagReleaseOutcome, Progress
from conveyor.flags.store import FlagLedger
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
    settings = environment_spec(project, environment).flags
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
    ).run()
