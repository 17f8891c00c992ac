"""`can-i-deploy`, answered from Conveyor's own records, and the contract gate of `deploy`.

A service may go to an environment when every contract it takes part in there is verified:
- as a consumer, its pact with each provider of `contracts.providers` was verified by the
  provider version live in that environment;
- as a provider, it verified the pact of each consumer version live in that environment.

Which version runs where comes from each service's release ledger; pacts from the
consumer's records (`contract` step), verifications from the provider's (`contract-verify`
step). Anything missing (no records, no live provider, a version nobody built, no pact,
no verification) is a refusal naming it: "no data" is never "verified".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conveyor.errors import ConveyorError
from conveyor.service.project import Project
from conveyor.spec.contracts import Contracts
from conveyor.store.contract_versions import Version, deployed, open_partner, version_of
from conveyor.store.contracts import (
    FailedInteraction,
    pacts_of_runs,
    verifications_of_runs,
)
from conveyor.store.store import Store


@dataclass(frozen=True)
class ContractCheck:
    consumer: str
    provider: str
    verified: bool
    detail: str  # what was checked, or what is missing
    consumer_version: str = ""
    provider_version: str = ""
    pact: str = ""  # the pact's digest
    failures: list[FailedInteraction] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "consumer": self.consumer,
            "provider": self.provider,
            "verified": self.verified,
            "detail": self.detail,
            "consumer_version": self.consumer_version,
            "provider_version": self.provider_version,
            "pact": self.pact,
            "failures": [f.to_json() for f in self.failures],
        }


@dataclass(frozen=True)
class Answer:
    service: str
    version: str
    environment: str
    checks: list[ContractCheck]

    @property
    def ok(self) -> bool:
        return all(check.verified for check in self.checks)

    def reasons(self) -> list[str]:
        lines = []
        for check in self.checks:
            if check.verified:
                continue
            named = "; ".join(f"{f.interaction!r}: {f.mismatch}" for f in check.failures)
            lines.append(f"{check.detail}{': ' + named if named else ''}")
        return lines

    def to_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "version": self.version,
            "environment": self.environment,
            "ok": self.ok,
            "checks": [check.to_json() for check in self.checks],
        }


def pipeline_contracts(project: Project) -> tuple[str, Contracts]:
    from conveyor.spec.loader import load_pipeline
    from conveyor.steps.registry import STEP_PARAMS

    pipeline = load_pipeline(project.spec_path, steps=STEP_PARAMS).pipeline
    return pipeline.name or project.directory.name, pipeline.contracts


def can_i_deploy(
    project: Project, store: Store, service: str, label: str, environment: str
) -> Answer:
    """May `service@label` (this project's service) go to `environment`?"""
    name, contracts = pipeline_contracts(project)
    if service != name:
        raise ConveyorError(
            f"this project is {name!r}, not {service!r}: can-i-deploy answers for the "
            "project whose conveyor.yml it reads",
            hint=f"run it in {service}'s folder, or name its conveyor.yml with -f",
        )
    if not contracts.declared:
        raise ConveyorError(
            f"{service} declares no contracts (`contracts:` in conveyor.yml): nothing to check",
            hint="docs/contracts.md shows how to declare providers and consumers",
        )
    version = version_of(store, service, label)
    return Answer(
        service, label, environment, check_version(project, store, contracts, version, environment)
    )


def check_version(
    project: Project, store: Store, contracts: Contracts, version: Version, environment: str
) -> list[ContractCheck]:
    spec_dir = project.spec_path.parent
    checks = []
    for provider, partner in contracts.providers.items():
        try:
            with open_partner(spec_dir, provider, partner) as other:
                checks.append(_as_consumer(store, other, version, provider, environment))
        except ConveyorError as error:
            checks.append(ContractCheck(version.service, provider, False, error.message))
    for consumer, partner in contracts.consumers.items():
        try:
            with open_partner(spec_dir, consumer, partner) as other:
                checks.append(_as_provider(other, store, version, consumer, environment))
        except ConveyorError as error:
            checks.append(ContractCheck(consumer, version.service, False, error.message))
    return checks


def _as_consumer(
    mine: Store, theirs: Store, version: Version, provider: str, environment: str
) -> ContractCheck:
    consumer = version.service
    pacts = pacts_of_runs(mine.engine, version.run_ids, consumer=consumer, provider=provider)
    if not pacts:
        detail = f"{version.title} recorded no pact with {provider} (a `contract` job records it)"
        return ContractCheck(consumer, provider, False, detail)
    live = deployed(theirs, provider, environment)
    if live is None:
        detail = (
            f"{provider} runs nothing in {environment}: nothing verified {consumer}'s pact there"
        )
        return ContractCheck(consumer, provider, False, detail, pacts[0].consumer_version)
    return _verified(
        theirs,
        pact_digest=pacts[0].digest,
        consumer=consumer,
        consumer_version=pacts[0].consumer_version,
        provider_version=live.version,
        environment=environment,
    )


def _as_provider(
    theirs: Store, mine: Store, version: Version, consumer: str, environment: str
) -> ContractCheck:
    provider = version.service
    live = deployed(theirs, consumer, environment)
    if live is None:
        detail = f"{consumer} runs nothing in {environment}: no pact of it to honour there"
        return ContractCheck(consumer, provider, True, detail)
    if not live.version.run_ids:
        detail = (
            f"{environment} runs {consumer} {live.digest[:19]}, which no run of {consumer} "
            "built: an unknown version, its pact unknown"
        )
        return ContractCheck(consumer, provider, False, detail)
    pacts = pacts_of_runs(theirs.engine, live.version.run_ids, consumer=consumer, provider=provider)
    running = live.version.commits[-1][:12] if live.version.commits else live.digest[:19]
    if not pacts:
        detail = f"{consumer}@{running} in {environment} recorded no pact with {provider}"
        return ContractCheck(consumer, provider, False, detail, running)
    return _verified(
        mine,
        pact_digest=pacts[0].digest,
        consumer=consumer,
        consumer_version=pacts[0].consumer_version,
        provider_version=version,
        environment=environment,
    )


def _verified(
    provider_store: Store,
    *,
    pact_digest: str,
    consumer: str,
    consumer_version: str,
    provider_version: Version,
    environment: str,
) -> ContractCheck:
    """Whether `provider_version` verified that pact (by content: the same pact recorded by
    another consumer version counts, as in the Pact Broker)."""
    provider = provider_version.service
    title = f"{consumer}@{consumer_version[:12]} -> {provider_version.title} in {environment}"
    base = ContractCheck(
        consumer, provider, False, "", consumer_version, provider_version.label, pact_digest
    )
    if not provider_version.run_ids:
        label = provider_version.label[:19]
        detail = f"{title}: no run of {provider} built {label}: an unknown version"
        return _with(base, detail)
    found = verifications_of_runs(
        provider_store.engine, provider_version.run_ids, consumer=consumer, pact_digest=pact_digest
    )
    if not found:
        detail = (
            f"{title}: the pact {pact_digest[:19]} was never verified by this {provider} version"
        )
        return _with(base, detail)
    newest = found[0]
    if not newest.passed:
        return _with(base, f"{title}: verification failed", newest.failures)
    return _with(base, f"{title}: verified by run {newest.run_id}", verified=True)


def _with(
    base: ContractCheck,
    detail: str,
    failures: list[FailedInteraction] | None = None,
    *,
    verified: bool = False,
) -> ContractCheck:
    return ContractCheck(
        base.consumer,
        base.provider,
        verified,
        detail,
        base.consumer_version,
        base.provider_version,
        base.pact,
        failures or [],
    )


def contract_gate(
    project: Project,
    store: Store,
    *,
    contracts: Contracts,
    service: str,
    digest: str,
    environment: str,
) -> None:
    """`deploy`'s check: refuses the image when a contract with what runs in `environment`
    is not verified, naming each and its failing interactions. No contracts: no check."""
    if not contracts.declared:
        return
    version = version_of(store, service, digest)
    answer = Answer(
        service, digest, environment, check_version(project, store, contracts, version, environment)
    )
    if answer.ok:
        return
    raise ConveyorError(
        f"contracts refuse {service}@{digest[:19]} in {environment}: "
        + " | ".join(answer.reasons()),
        hint=f"`conveyor can-i-deploy {service}@{digest} --to {environment}` shows every contract",
    )
