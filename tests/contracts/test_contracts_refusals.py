"""What is missing is refused, named, and never counted as verified: a pact that does not
parse, a provider that never answers, a consumer version with no recorded pact, an
environment running a version nobody built, a consumer with no records at all."""

from __future__ import annotations

import pytest

from conftest import MakeProject, run_cli
from contracts.services import (
    SHOP_SPEC,
    MakePayments,
    Service,
    fake_digest,
    seed_live,
    succeeded,
)
from conveyor.store.contracts import verifications_of_runs

pytestmark = pytest.mark.real  # pipelines that start the Pact tests, a provider, a verifier


def verify_log(payments: Service) -> str:
    outcome = payments.run()
    assert not succeeded(outcome)
    return payments.repo.log(outcome.run_id, "verify-contracts")


def test_a_pact_file_that_does_not_parse_fails_the_contract_job(
    git_project: MakeProject,
) -> None:
    writes_garbage = (
        "import os; open(os.path.join(os.environ['PACT_DIR'], 'shop-payments.json'), 'w')"
        ".write('{not json')"
    )
    spec = SHOP_SPEC.replace(
        "[python, -m, pytest, -q, -p, no:cacheprovider, tests/contract]",
        f'[python, -c, "{writes_garbage}"]',
    )
    repo = git_project(spec)
    outcome = Service(repo).run()
    assert not succeeded(outcome)
    assert "shop-payments.json: not a readable pact file" in repo.log(outcome.run_id, "contract")


def test_a_provider_that_never_answers_fails_and_is_recorded_failed(
    shop: Service, payments_of: MakePayments
) -> None:
    assert succeeded(shop.run())
    payments = payments_of(
        command='[python, -c, "import time; time.sleep(30)"]', start_timeout="1s"
    )
    outcome = payments.run()
    assert not succeeded(outcome)
    log = payments.repo.log(outcome.run_id, "verify-contracts")
    assert "payments never answered /healthz within 1s" in log
    with shop.store() as store:
        pact = store.reports(1, "pact")[0].digest
    with payments.store() as store:
        found = verifications_of_runs(
            store.engine, [outcome.run_id], consumer="shop", pact_digest=pact
        )
    assert [v.passed for v in found] == [False]
    assert found[0].failures[0].interaction == "a payment for an order"


HANGS = """\
import http.server, os, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def do_POST(self):
        time.sleep(30)
address = (os.environ["HOST"], int(os.environ["PORT"]))
http.server.ThreadingHTTPServer(address, Handler).serve_forever()
"""


def test_a_provider_whose_answer_never_comes_fails_on_the_interaction(
    shop: Service, payments_of: MakePayments
) -> None:
    assert succeeded(shop.run())
    payments = payments_of(command="[python, hangs.py]")
    payments.repo.commit({"hangs.py": HANGS})
    log = verify_log(payments)
    assert "shop: 'a payment for an order': error sending request" in log


def test_a_consumer_version_with_no_recorded_pact_is_refused(
    shop: Service, payments_of: MakePayments
) -> None:
    assert succeeded(shop.run())  # the shop's newest pact exists ...
    shop.repo.commit({"conveyor.yml": "version: 1\nname: shop\njobs:\n  noop: {run: 'true'}\n"})
    without = shop.run()  # ... but the version in staging recorded none
    digest = shop.image_of(without.run_id, "shop without a pact")
    with shop.store() as store:
        seed_live(store, "staging", "shop", digest)
    payments = payments_of()
    assert "in staging recorded no pact with payments" in verify_log(payments)
    answer = run_cli(
        ["can-i-deploy", "payments@" + payments.repo.git("rev-parse", "HEAD"), "--to", "staging"],
        payments.repo.root,
    )
    assert answer.exit_code == 1
    assert "in staging recorded no pact with payments" in answer.stdout


def test_an_environment_running_an_unknown_version_is_refused(
    shop: Service, payments_of: MakePayments
) -> None:
    assert succeeded(shop.run())
    with shop.store() as store:
        seed_live(store, "staging", "shop", fake_digest(9))  # no run of the shop built it
    payments = payments_of()
    log = verify_log(payments)
    assert "staging runs shop sha256:99999999999" in log and "an unknown version" in log


def test_a_consumer_with_no_records_is_refused(payments_of: MakePayments) -> None:
    payments = payments_of()
    assert "no Conveyor records for shop" in verify_log(payments)


def test_can_i_deploy_refuses_an_unknown_version_and_a_bad_name(
    shop: Service, payments_of: MakePayments
) -> None:
    payments = payments_of()
    unknown = run_cli(["can-i-deploy", "payments@deadbeef", "--to", "staging"], payments.repo.root)
    assert unknown.exit_code == 2
    assert "payments@deadbeef is an unknown version" in unknown.stderr
    nameless = run_cli(["can-i-deploy", "payments", "--to", "staging"], payments.repo.root)
    assert nameless.exit_code == 2
    assert "SERVICE@VERSION" in nameless.stderr


def test_a_consumer_may_go_only_where_a_provider_verified_its_pact(
    shop: Service, payments_of: MakePayments
) -> None:
    shop.repo.commit(
        {
            "conveyor.yml": SHOP_SPEC
            + "contracts:\n  providers:\n    payments: {project: ../payments}\n"
        }
    )
    assert succeeded(shop.run())
    payments = payments_of()
    version = shop.repo.git("rev-parse", "HEAD")
    ask = ["can-i-deploy", f"shop@{version}", "--to", "staging"]
    nowhere = run_cli(ask, shop.repo.root)
    assert nowhere.exit_code == 1
    assert "no Conveyor records for payments" in nowhere.stdout
    verified = payments.run()
    assert succeeded(verified)
    not_running = run_cli(ask, shop.repo.root)
    assert "payments runs nothing in staging" in not_running.stdout
    with payments.store() as store:
        seed_live(store, "staging", "payments", payments.image_of(verified.run_id, "p1"))
    assert run_cli(ask, shop.repo.root).exit_code == 0
