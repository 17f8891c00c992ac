"""One controller per environment across servers: a PostgreSQL session advisory lock,
refused to a second session with its holder named, and freed by the server when the
holder's session dies (a SIGKILLed process), as fcntl's is by the kernel."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import wait_until
from conveyor.errors import InfrastructureError
from conveyor.store.db import create_engine
from conveyor.store.session_locks import SessionLockHeld, lock_key, session_lock
from pg_server import PostgresServer

# A controller that takes the lock of "production", says so, and waits to be killed.
_HOLDER = """
import sys, time
from conveyor.store.db import create_engine
from conveyor.store.session_locks import session_lock

with session_lock(create_engine(sys.argv[1]), "environment production", "pid 1 on far"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def engine(postgres_server: PostgresServer) -> Iterator[sa.Engine]:
    opened = create_engine(postgres_server.url(postgres_server.new_database()))
    yield opened
    opened.dispose()


def _free(engine: sa.Engine, name: str) -> bool:
    try:
        with session_lock(engine, name, "a probe"):
            return True
    except SessionLockHeld:
        return False


@pytest.mark.real
def test_a_held_lock_is_refused_with_its_holder_named_until_released(engine: sa.Engine) -> None:
    with session_lock(engine, "environment production", "pid 42 on alpha"):
        with (
            pytest.raises(SessionLockHeld, match="held by pid 42 on alpha"),
            session_lock(engine, "environment production", "pid 7 on beta"),
        ):
            pass
        assert _free(engine, "environment staging")  # another name, another lock

    assert _free(engine, "environment production")


@pytest.mark.real
def test_the_lock_frees_itself_when_its_holder_is_killed(
    engine: sa.Engine, postgres_server: PostgresServer
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(engine.url.render_as_string(hide_password=False))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(SessionLockHeld, match="pid 1 on far"),
            session_lock(engine, "environment production", "pid 7 on beta"),
        ):
            pass
    finally:
        holder.kill()
        holder.communicate()  # reaps it and closes its pipe

    wait_until(lambda: _free(engine, "environment production"), "the lock to be freed")


def test_keys_are_stable_and_sqlite_is_refused_clearly(tmp_path: Path) -> None:
    assert lock_key("environment production") == lock_key("environment production")
    assert lock_key("environment production") != lock_key("environment staging")
    sqlite = create_engine(f"sqlite:///{tmp_path / 'conveyor.db'}")
    with (
        pytest.raises(InfrastructureError, match="need PostgreSQL"),
        session_lock(sqlite, "environment production", "me"),
    ):
        pass
