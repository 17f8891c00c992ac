from conveyor.spec.loader import parse_pipeline
from conveyor.spec.starter import STARTER_YAML
from conveyor.steps.archive import ArchiveParams
from conveyor.steps.registry import STEP_PARAMS


def test_starter_loads_cleanly() -> None:
    loaded = parse_pipeline(STARTER_YAML, "conveyor.yml", steps=STEP_PARAMS)
    jobs = loaded.pipeline.jobs
    assert list(jobs) == ["lint", "test", "build", "deploy"]
    assert jobs["test"].matrix is not None
    assert jobs["test"].matrix.axes() == {"python": ["3.11", "3.12"]}
    assert jobs["build"].outputs == ["dist/source.tar.gz"]
    assert isinstance(loaded.step_params["build"], ArchiveParams)
    assert jobs["deploy"].rules is not None and jobs["deploy"].concurrency is not None
