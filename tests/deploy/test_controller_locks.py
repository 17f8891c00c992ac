"""The environment's lock decides which controller drives a deploy: a controller whose
database session ended stops without touching anything, and the next one carries the
deploy on; a deploy of a release another controller is carrying on waits for its outcome
instead of starting the release again. A fake clock, runtime and router (deploy/fakes.py)
behind the real controller, ledger and locks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.deploy.locks import EnvironmentLockLost, FileLock, SessionLock, holder_description
from conveyor.spec.environments import Environment
from conveyor.states import DeployState
from conveyor.store.store import Store
from deploy.fakes import Stage
from pg_server import PostgresServer

pytestmark = pytest.mark.timeout(30)
PAUSED = {
    "canary": {
        "analysis": {"interval": "1s", "min_duration": "3s", "max_duration": "60s"},
        "steps": [{"weight": 20}, {"pause": "until-promoted"}, {"weight": 60}],
    }
}
SPEC = Environment.model_validate({"replicas": 2, "drain": "2s", "strategy": PAUSED})


class Crash(BaseException):
    """The controller's process dies here (not an error anything catches)."""


def _crash() -> None:
    raise Crash


@pytest.fixture
def postgres_store(tmp_path: Path, postgres_server: PostgresServer) -> Iterator[Store]:
    with Store(tmp_path / "state", postgres_server.url(postgres_server.new_database())) as opened:
        yield opened


@pytest.mark.real
def test_a_controller_whose_session_ends_stops_and_the_next_carries_the_canary_on(
    postgres_store: Store, tmp_path: Path
) -> None:
    env = Stage(SPEC, postgres_store, tmp_path / "unused.lock")
    env.lock = SessionLock("staging", postgres_store.engine)
    env.deploy("v1")
    routes_at_the_cut: list[object] = []

    def cut_the_session() -> None:
        """The database drops the controller's lock session (a restart, a network cut)."""
        with postgres_store.engine.connect() as conn:
            import sqlalchemy as sa

            cut = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = :holder"
                ),
                {"holder": holder_description()},
            )
            assert cut.scalars().all() == [True]
        routes_at_the_cut.append(env.router.routes())

    env.clock.after(5, cut_the_session)  # held at the pause, the canary at 20 %
    with pytest.raises(EnvironmentLockLost, match="database session ended"):
        env.deploy("v2")
    assert env.router.routes() == routes_at_the_cut[0]  # nothing changed after the cut
    [left] = postgres_store.ledger.deploys.of_environment("staging", DeployState.IN_PROGRESS)
    assert left.release_id == env.release_id("v2")

    env.clock.after(5, lambda: env.command("promote"))
    outcome = env.controller().reconcile()  # the next controller (a server adopting)

    assert outcome is not None and outcome.state is DeployState.SUCCEEDED
    assert outcome.deploy_id == left.id
    assert env.runtime.starts.count(env.release_id("v2")) == 1  # never a second copy


def test_a_deploy_of_a_release_being_carried_on_waits_for_its_outcome(tmp_path: Path) -> None:
    with Store(tmp_path / "state") as store:
        env = Stage(SPEC, store, tmp_path / "deploy.lock")
        env.deploy("v1")
        env.clock.after(5, _crash)
        with pytest.raises(Crash):
            env.deploy("v2", env.elsewhere())  # its controller died at the pause
        [interrupted] = store.ledger.deploys.of_environment("staging", DeployState.IN_PROGRESS)
        adopter = contextlib.ExitStack()
        adopter.enter_context(FileLock("staging", tmp_path / "deploy.lock").hold())

        def adopter_finishes() -> None:
            """Another controller (a server) held the lock; now it carries the deploy on."""
            adopter.close()
            env.clock.after(5, lambda: env.command("promote"))
            assert env.controller().reconcile() is not None

        env.clock.after(3, adopter_finishes)
        outcome = env.deploy("v2")  # the run queued again deploys the same image

    assert outcome.state is DeployState.SUCCEEDED
    assert outcome.deploy_id == interrupted.id  # that deploy's outcome, not a new one
    assert env.runtime.starts.count(env.release_id("v2")) == 1
    assert any("waiting for its outcome" in said for said in env.said)
