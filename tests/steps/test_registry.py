"""Every listed step imports, under the name it is listed by."""

from conveyor.steps.registry import STEPS, step_names


def test_every_step_loads_under_its_own_name() -> None:
    for name in step_names():
        assert STEPS[name].name == name
    assert len(STEPS) == len(step_names())
