"""The loader's list of executor names matches the engine's registry."""

from conveyor.engine.executors import EXECUTORS
from conveyor.spec.loader import EXECUTOR_NAMES


def test_loader_knows_every_registered_executor() -> None:
    assert set(EXECUTOR_NAMES) == set(EXECUTORS)
