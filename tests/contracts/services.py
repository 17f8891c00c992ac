"""Helpers for two services with a contract, each a git repository and a Conveyor project of its own
beside the other (as conveyor.yml's `contracts:` names them): the shop (the consumer,
from examples/shop) and payments (the provider, from examples/payments)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conftest import GitProject
from conveyor.service.demo import demo_env
from conveyor.service.runs import RunOutcome
from conveyor.states import RunState
from conveyor.store.records import EventKind
from conveyor.store.store import Store
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SHOP_FILES = ["app/__init__.py", "app/payments.py", "tests/contract/test_payments_pact.py"]
PYPROJECT = '[tool.pytest.ini_options]\npythonpath = ["."]\nfilterwarnings = ["error"]\n'

SHOP_SPEC = """\
version: 1
name: shop
jobs:
  contract:
    uses: contract
    with:
      command: [python, -m, pytest, -q, -p, no:cacheprovider, tests/contract]
"""
PAYMENTS_SPEC = """\
version: 1
name: payments
contracts:
  consumers:
    shop: {{project: ../shop}}
jobs:
  verify-contracts:
    uses: contract-verify
    with:
      command: {command}
      start_timeout: {start_timeout}
      request_timeout: 2s
environments:
  staging: {{}}
"""


@dataclass(frozen=True)
class Service:
    repo: GitProject

    def run(self) -> RunOutcome:
        # Jobs find this interpreter's python (with pact-python) first on PATH.
        return self.repo.run(parallelism=1, extra_env=demo_env())

    def store(self) -> Store:
        return self.repo.store()

    def apply(self, change: str) -> str:
        """Lay a demo change (examples/payments/demo-changes/<change>) over it; commit."""
        source = EXAMPLES / "payments" / "demo-changes" / change
        shutil.copytree(source, self.repo.root, dirs_exist_ok=True)
        return self.repo.commit(message=change)

    def image_of(self, run_id: int, content: str) -> str:
        """An image, tied to run `run_id` as its build-image job would tie it (the "image"
        report); a scratch image is enough: contracts look at its digest, not inside."""
        source = self.repo.root.parent / f"image-{self.repo.root.name}-{run_id}"
        (source / "app").mkdir(parents=True)
        (source / "app" / "version").write_text(content)
        store = LayoutStore(self.repo.project().state_dir / "images")
        name = self.repo.root.name
        built = build_image(ImageSpec(app=AppFiles(source)), store, name, (f"r{run_id}",))
        with self.store() as records:
            summary = {"repository": name, "digest": built.manifest_digest, "tags": []}
            records.add_report(run_id, "build", "image", built.manifest_digest, summary)
        return built.manifest_digest


def seed_live(store: Store, environment: str, repository: str, digest: str) -> None:
    """The ledger as a finished deploy of `digest` to `environment` leaves it."""
    ledger = store.ledger
    ledger.environments.ensure(environment, 1, 2)
    release = f"{environment}-{repository}-{digest[7:19]}"
    ledger.releases.register(environment, release, repository, digest, [3])
    ledger.environments.set_intent(
        environment,
        routes={},
        live=release,
        warm=None,
        event=EventKind.DEPLOY_FINISHED,
        actor="test",
        data={},
    )


def fake_digest(run: int) -> str:
    return "sha256:" + f"{run:x}" * 64


def repository(root: Path, spec: str, files: dict[str, str]) -> GitProject:
    root.mkdir()
    repo = GitProject(root)
    repo.git("init", "-q", "-b", "main")
    repo.commit({"conveyor.yml": textwrap.dedent(spec), **files}, "first")
    return repo


def make_shop(root: Path) -> Service:
    """The shop: its payments client and its Pact test, from examples/shop."""
    files = {name: (EXAMPLES / "shop" / name).read_text() for name in SHOP_FILES}
    return Service(repository(root, SHOP_SPEC, {**files, "pyproject.toml": PYPROJECT}))


def make_payments(root: Path, command: str, start_timeout: str) -> Service:
    """Payments from examples/payments, its pipeline verifying the shop's pacts."""
    files = {
        str(path.relative_to(EXAMPLES / "payments")): path.read_text()
        for path in (EXAMPLES / "payments").glob("app/*.py")
    }
    spec = PAYMENTS_SPEC.format(command=command, start_timeout=start_timeout)
    return Service(repository(root, spec, files))


MakePayments = Callable[..., Service]


def succeeded(outcome: RunOutcome) -> bool:
    return outcome.state is RunState.SUCCESS
