"""Every listed step imports, under the name it is listed by."""

from conveyor.steps.registry import STEPS, step_names


def test_every_step_loads_under_its_own_name() -> None:
    for name in step_names():
        assert STEPS[name].name == name
    assert len(STEPS) == len(step_names())


def test_steps_whose_work_is_all_on_every_run_are_never_taken_from_the_cache() -> None:
    from conveyor.engine.step import every_run_reason

    every_run = {name for name in STEPS if every_run_reason(STEPS[name]) is not None}

    assert {"scan-image", "sign", "push", "deploy", "e2e", "perf", "dast"} <= every_run
    assert not every_run & {"shell", "archive", "lint", "sast", "secrets", "test", "build-image"}
    assert every_run_reason(STEPS["scan-image"]) == (
        "scan-image runs on every run: its answer depends on the database"
    )
