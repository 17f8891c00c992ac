"""The parts of `executor: celery` that need no broker: the spec keys, sealing, the
artifact tar, settings, `conveyor worker`'s own checks, and a run with no broker set."""

from __future__ import annotations

import io
import stat
import tarfile
from pathlib import Path

import pytest

from conftest import MakeProject, run_cli
from conveyor.engine.workers.artifacts import ArtifactError, ArtifactStore, pack, unpack
from conveyor.engine.workers.sealing import Sealer, SealError, new_key
from conveyor.engine.workers.settings import WorkerSettings
from conveyor.errors import ConveyorError, SpecError, SpecErrors
from conveyor.spec.loader import parse_pipeline
from conveyor.states import FailureClass, JobState, RunState
from conveyor.steps.registry import STEP_PARAMS
from conveyor.supply.oci.layout import LayoutStore


def test_defaults_executor_applies_to_jobs_that_name_none() -> None:
    loaded = parse_pipeline(
        "version: 1\ndefaults:\n  executor: celery\njobs:\n"
        "  a:\n    run: 'true'\n    queue: podman\n"
        "  b:\n    run: 'true'\n    executor: local\n",
        "conveyor.yml",
        steps=STEP_PARAMS,
    )
    jobs = loaded.pipeline.jobs
    assert (jobs["a"].executor, jobs["a"].queue) == ("celery", "podman")
    assert (jobs["b"].executor, jobs["b"].queue) == ("local", "default")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("defaults:\n  executor: docker\njobs:\n  a:\n    run: 'true'\n", "defaults.executor"),
        ("jobs:\n  a:\n    run: 'true'\n    queue: Bad Queue\n", "jobs.a.queue"),
    ],
    ids=["unknown-default-executor", "bad-queue-name"],
)
def test_bad_executor_settings_name_their_key(text: str, where: str) -> None:
    with pytest.raises((SpecError, SpecErrors)) as caught:
        parse_pipeline("version: 1\n" + text, "conveyor.yml", steps=STEP_PARAMS)
    assert where in str(caught.value)


def test_sealed_messages_open_only_with_the_same_key() -> None:
    sealer = Sealer(new_key())
    token = sealer.seal_json({"env": {"TOKEN": "s3cr3t"}})
    assert "s3cr3t" not in token
    assert sealer.open_json(token) == {"env": {"TOKEN": "s3cr3t"}}
    with pytest.raises(SealError):
        Sealer(new_key()).open_json(token)
    with pytest.raises(ConveyorError, match="not a Fernet key"):
        Sealer(b"short")


def test_files_travel_as_a_sealed_oci_artifact(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "dist").mkdir(parents=True)
    (source / "dist" / "app.txt").write_text("built\n")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    sealer = Sealer(new_key())
    store = ArtifactStore(LayoutStore(tmp_path / "layout"), sealer.seal, sealer.open)
    digest = store.push(source, ["dist/app.txt", "run.sh"], "out-1")
    assert digest is not None
    assert store.push(source, [], "out-2") is None  # nothing to carry, nothing stored
    target = tmp_path / "target"
    target.mkdir()
    assert store.pull(digest, target) == 2
    assert (target / "dist" / "app.txt").read_text() == "built\n"
    assert (target / "run.sh").stat().st_mode & stat.S_IXUSR
    blobs = b"".join(
        path.read_bytes() for path in (tmp_path / "layout").rglob("*") if path.is_file()
    )
    assert b"built" not in blobs  # the layer is sealed


@pytest.mark.parametrize(
    "member",
    ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "link"],
    ids=["dot-dot", "absolute", "inner-dot-dot", "symlink"],
)
def test_an_artifact_leading_out_writes_nothing(tmp_path: Path, member: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        good = tarfile.TarInfo("good.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(member)
        if member == "link":
            bad.type = tarfile.SYMTYPE
            bad.linkname = "/etc/passwd"
        else:
            bad.size = 2
        tar.addfile(bad, io.BytesIO(b"no") if member != "link" else None)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ArtifactError, match="refusing"):
        unpack(buffer.getvalue(), root)
    assert list(root.iterdir()) == []


def test_pack_carries_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "link").symlink_to("file.txt")
    with tarfile.open(fileobj=io.BytesIO(pack(tmp_path, ["file.txt", "link"]))) as tar:
        assert tar.getnames() == ["file.txt"]


def test_settings_say_what_is_missing() -> None:
    with pytest.raises(ConveyorError) as caught:
        WorkerSettings.from_env({})
    assert "CONVEYOR_BROKER_URL is not set" in caught.value.message
    env = {
        "CONVEYOR_BROKER_URL": "redis://127.0.0.1:1/0",
        "CONVEYOR_ARTIFACTS": "oci:/tmp/x",
        "CONVEYOR_WORKER_KEY": new_key().decode(),
    }
    with pytest.raises(ConveyorError, match="CONVEYOR_WORKER_LEASE='soon'"):
        WorkerSettings.from_env({**env, "CONVEYOR_WORKER_LEASE": "soon"})
    with pytest.raises(ConveyorError, match="no worker key"):
        WorkerSettings.from_env({k: v for k, v in env.items() if k != "CONVEYOR_WORKER_KEY"})


def test_worker_refuses_bad_queues_and_keeps_keys(tmp_path: Path) -> None:
    result = run_cli(["worker", "--queues", "default,Bad Queue"], tmp_path)
    assert result.exit_code == 2
    assert "'Bad Queue' is not a queue name" in result.stderr
    key = tmp_path / "worker.key"
    assert run_cli(["worker", "--new-key", str(key)], tmp_path).exit_code == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    Sealer(key.read_bytes().strip())  # a usable key
    again = run_cli(["worker", "--new-key", str(key)], tmp_path)
    assert again.exit_code == 2
    assert "a key is never overwritten" in again.stderr


def test_a_celery_job_without_a_broker_fails_clearly(git_project: MakeProject) -> None:
    project = git_project("version: 1\njobs:\n  remote:\n    executor: celery\n    run: 'true'\n")
    outcome = project.run()
    assert outcome.state is RunState.FAILED
    job = project.jobs(outcome.run_id)["remote"]
    assert job.state is JobState.FAILED
    assert job.failure is FailureClass.INFRASTRUCTURE
    assert job.detail is not None
    assert "CONVEYOR_BROKER_URL is not set" in job.detail
