"""The flow of issue 18: the shop's `contract` job records its pact with payments, the
payments pipeline verifies it against what the shop runs, a breaking payments change is
refused by `contract-verify`, `can-i-deploy` and `deploy` (the interaction named), and a
compatible change goes through. Real pipeline runs: the shop's Pact tests against
pact-python's mock server, payments started from its workspace, pact-python's verifier."""

from __future__ import annotations

import pytest

from conftest import run_cli
from contracts.services import MakePayments, Service, seed_live, succeeded
from conveyor.errors import ConveyorError
from conveyor.service import environments
from conveyor.service.contracts import contract_gate, pipeline_contracts
from conveyor.store.contracts import latest_pact, pacts_of_runs

pytestmark = pytest.mark.real  # starts the provider and Pact's mock server and verifier

INTERACTION = "a payment for an order"


def shop_in_staging(shop: Service) -> int:
    """The shop's pipeline, its image live in staging; returns the run."""
    outcome = shop.run()
    assert succeeded(outcome), shop.repo.log(outcome.run_id, "contract")
    digest = shop.image_of(outcome.run_id, "shop 1")
    with shop.store() as store:
        seed_live(store, "staging", "shop", digest)
    return outcome.run_id


def refusal(payments: Service, digest: str) -> str:
    project = payments.repo.project()
    with payments.store() as store, pytest.raises(ConveyorError) as refused:
        environments.deploy(project, store, "staging", f"payments@{digest}", actor="test")
    return refused.value.message


def test_the_shops_pact_is_recorded_by_consumer_provider_and_version(shop: Service) -> None:
    run_id = shop_in_staging(shop)
    commit = shop.repo.git("rev-parse", "HEAD")
    with shop.store() as store:
        recorded = pacts_of_runs(store.engine, [run_id], consumer="shop", provider="payments")
        reports = store.reports(run_id, "pact")
    assert [(p.consumer_version, p.interactions) for p in recorded] == [(commit, [INTERACTION])]
    assert reports[0].digest == recorded[0].digest  # the pact file is an artifact of the run
    assert reports[0].summary["provider"] == "payments"


def test_a_breaking_change_is_refused_and_a_compatible_one_goes_through(
    shop: Service, payments_of: MakePayments
) -> None:
    shop_in_staging(shop)
    payments = payments_of()
    first = payments.run()
    assert succeeded(first), payments.repo.log(first.run_id, "verify-contracts")

    breaking = payments.apply("1-breaking-api")
    broken = payments.run()
    assert not succeeded(broken)
    log = payments.repo.log(broken.run_id, "verify-contracts")
    assert INTERACTION in log and "missing the following keys: status" in log
    digest = payments.image_of(broken.run_id, "payments breaking")
    refused = refusal(payments, digest)
    assert f"'{INTERACTION}'" in refused and "verification failed" in refused
    answer = run_cli(
        ["can-i-deploy", f"payments@{breaking[:12]}", "--to", "staging"], payments.repo.root
    )
    assert answer.exit_code == 1
    assert INTERACTION in answer.stdout and ": no" in answer.stdout

    compatible = payments.apply("2-compatible-change")
    fixed = payments.run()
    assert succeeded(fixed), payments.repo.log(fixed.run_id, "verify-contracts")
    digest = payments.image_of(fixed.run_id, "payments compatible")
    service, contracts = pipeline_contracts(payments.repo.project())
    with payments.store() as store:
        contract_gate(
            payments.repo.project(),
            store,
            contracts=contracts,
            service=service,
            digest=digest,
            environment="staging",
        )
    answer = run_cli(
        ["can-i-deploy", f"payments@{compatible}", "--to", "staging", "-o", "json"],
        payments.repo.root,
    )
    assert answer.exit_code == 0, answer.stdout
    checks = answer.json()["checks"]
    assert [(c["consumer"], c["verified"]) for c in checks] == [("shop", True)]


def test_the_newest_pact_is_verified_before_the_shop_runs_anywhere(
    shop: Service, payments_of: MakePayments
) -> None:
    assert succeeded(shop.run())
    payments = payments_of()
    outcome = payments.run()
    assert succeeded(outcome)
    log = payments.repo.log(outcome.run_id, "verify-contracts")
    assert "the pact of shop@" in log and "(latest)" in log
    with shop.store() as store:
        assert latest_pact(store.engine, consumer="shop", provider="payments") is not None
