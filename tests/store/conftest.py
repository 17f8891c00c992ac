"""Every store test that opens a database runs on both backends: SQLite (the state
folder's file, the default) and PostgreSQL (a database of its own on a real server, which
each pytest-xdist worker starts once). A missing PostgreSQL fails the tests, never skips."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.store import Store
from pg_server import PostgresServer

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
BACKENDS = [
    pytest.param(SQLITE, id=SQLITE),
    pytest.param(POSTGRESQL, id=POSTGRESQL, marks=pytest.mark.real),
]


@pytest.fixture(scope="session")
def postgres_at_head(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A template database already at the head revision: copying it is cheaper than
    creating the tables in each test's database."""
    name = postgres_server.new_database()
    Store(tmp_path_factory.mktemp("template"), postgres_server.url(name)).close()
    with postgres_server.connect() as conn:
        conn.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    return name


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The URL this test's stores open (`Store(folder, store_url)`): None for the state
    folder's SQLite file, else a new PostgreSQL database at the head revision."""
    if request.param == SQLITE:
        return None
    # Looked up, not named as parameters: a session fixture in a test's signature puts
    # all its tests in one xdist group (tests/real_components.py); each worker starts
    # its own server instead.
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template: str = request.getfixturevalue("postgres_at_head")
    return server.url(server.new_database(template))


@pytest.fixture
def store_backend(store_url: str | None) -> str:
    return SQLITE if store_url is None else POSTGRESQL


@pytest.fixture
def new_empty_database(
    request: pytest.FixtureRequest, store_backend: str, tmp_path: Path
) -> Callable[[], str]:
    """Makes databases with no tables yet on this test's backend; returns their URLs."""
    names = itertools.count()

    def make() -> str:
        if store_backend == SQLITE:
            return f"sqlite:///{tmp_path / f'empty-{next(names)}.db'}"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.url(server.new_database())

    return make
