"""Two services with a contract, each a git repository and a Conveyor project of its own
beside the other (as conveyor.yml's `contracts:` names them): the shop (the consumer)
and payments (the provider)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import MakeProject
from contracts.services import MakePayments, Service, make_payments, make_shop


@pytest.fixture
def shop(tmp_path: Path, git_project: MakeProject) -> Service:
    return make_shop(tmp_path / "shop")


@pytest.fixture
def payments_of(tmp_path: Path, git_project: MakeProject) -> MakePayments:
    """Payments, whose provider is started by `command` (default: its app)."""

    def make(command: str = "[python, -m, app]", start_timeout: str = "20s") -> Service:
        return make_payments(tmp_path / "payments", command, start_timeout)

    return make
