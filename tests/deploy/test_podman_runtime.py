"""The podman runtime with a real podman: a base-less busybox image served as containers.

podman, runc and busybox-static are declared dependencies of the real tests (apt `podman
runc busybox-static`): a machine without them fails here, it does not skip. Each test
gets its own podman storage and runroot, removed with every container afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from conveyor.deploy.model import ReleaseSpec, ReplicaState
from conveyor.deploy.runtimes.podman import PodmanRuntime
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore

BUSYBOX = Path("/bin/busybox")
VERSION = "shop 1.4.2"
T = TypeVar("T")
SERVE = ("/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p 127.0.0.1:$PORT -h /www")


def require_tools() -> None:
    for name in ("podman", "runc"):
        if shutil.which(name) is None:
            pytest.fail(f"{name} is not installed: apt-get install -y podman runc")
    if not BUSYBOX.is_file():
        pytest.fail("/bin/busybox is missing: apt-get install -y busybox-static")


def build(store: LayoutStore, tmp_path: Path, entrypoint: tuple[str, ...]) -> str:
    """A one-layer image on no base: /bin/busybox and a /www to serve."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "www").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "www" / "index.html").write_text(VERSION)
    (root / "www" / "healthz").write_text("ok")
    spec = ImageSpec(app=AppFiles(root), workdir="/", entrypoint=entrypoint, revision="ab" * 20)
    return build_image(spec, store, "shop", ("1.4.2",)).manifest_digest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def release(release_id: str, digest: str, replicas: int = 2) -> ReleaseSpec:
    ports = tuple(free_port() for _ in range(replicas))
    return ReleaseSpec(release_id, "shop", digest, ports, env={"GREETING": "hi"})


def get(address: str, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        return str(response.read().decode())


def eventually(check: Callable[[], T]) -> T:
    """check() once it is truthy; the deadline only keeps a broken test from hanging."""
    deadline = time.monotonic() + 15
    while not (result := check()):
        assert time.monotonic() < deadline, "condition not met in 15 s"
        time.sleep(0.1)
    return result


@contextmanager
def podman_in(tmp_path: Path) -> Iterator[PodmanRuntime]:
    """A podman runtime with its storage under `tmp_path`, emptied and removed after."""
    require_tools()
    podman = PodmanRuntime(tmp_path / "podman", LayoutStore(tmp_path / "images"))
    try:
        yield podman
    finally:
        env = {**os.environ, **podman.environment()}
        for argv in (["rm", "-af", "-t", "0"], ["rmi", "-af"]):
            subprocess.run(["podman", *argv], env=env, capture_output=True, check=False)
        shutil.rmtree(podman.state_dir, ignore_errors=True)
        shutil.rmtree(podman.runroot, ignore_errors=True)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[PodmanRuntime]:
    with podman_in(tmp_path) as podman:
        yield podman


@pytest.mark.real
def test_replicas_serve_the_image_and_a_second_start_adds_nothing(
    runtime: PodmanRuntime, tmp_path: Path
) -> None:
    digest = build(runtime.store, tmp_path, SERVE)
    spec = release("staging-shop-1", digest)

    runtime.start(spec)
    ready = runtime.wait_ready(spec.release_id, timeout=15)

    assert [r.state for r in ready] == [ReplicaState.READY, ReplicaState.READY]
    assert [r.address for r in ready] == [f"127.0.0.1:{port}" for port in spec.ports]
    assert [get(r.address) for r in ready] == [VERSION, VERSION]
    assert all(r.pid for r in ready)
    assert runtime.saturation(spec.release_id).memory_bytes > 0
    assert runtime.releases() == ["staging-shop-1"]

    again = runtime.start(spec)

    assert [(r.index, r.pid) for r in again] == [(0, ready[0].pid), (1, ready[1].pid)]


@pytest.mark.real
def test_stop_removes_the_containers_of_that_release_only(
    runtime: PodmanRuntime, tmp_path: Path
) -> None:
    digest = build(runtime.store, tmp_path, SERVE)
    first, second = release("shop-a", digest, replicas=1), release("shop-b", digest, replicas=1)
    runtime.start(first)
    runtime.start(second)

    runtime.stop(first.release_id)

    assert runtime.releases() == ["shop-b"]
    with pytest.raises(NotFoundError):
        runtime.status(first.release_id)
    assert get(runtime.wait_ready("shop-b", timeout=15)[0].address, "/healthz") == "ok"


@pytest.mark.real
def test_wait_ready_names_a_replica_that_never_listens(
    runtime: PodmanRuntime, tmp_path: Path
) -> None:
    digest = build(runtime.store, tmp_path, ("/bin/busybox", "sleep", "60"))
    spec = release("shop-silent", digest, replicas=1)
    runtime.start(spec)

    with pytest.raises(ConveyorError, match=r"shop-silent is not ready .*replica 0"):
        runtime.wait_ready(spec.release_id, timeout=0.5)


@pytest.mark.real
def test_a_crashing_replica_is_restarted_by_podman(runtime: PodmanRuntime, tmp_path: Path) -> None:
    digest = build(runtime.store, tmp_path, ("/bin/busybox", "sh", "-c", "exit 3"))
    spec = release("shop-crash", digest, replicas=1)
    runtime.start(spec)

    replica = eventually(lambda: [r for r in runtime.status(spec.release_id) if r.restarts])[0]

    assert replica.state in (ReplicaState.CRASHED, ReplicaState.STARTING)


def test_a_missing_podman_is_a_user_error_with_the_install_hint(tmp_path: Path) -> None:
    runtime = PodmanRuntime(tmp_path / "p", LayoutStore(tmp_path / "i"), podman="no-podman")

    with pytest.raises(ConveyorError) as raised:
        runtime.releases()

    assert raised.value.hint is not None and "apt-get install podman" in raised.value.hint
    shutil.rmtree(runtime.runroot, ignore_errors=True)


@pytest.mark.real
def test_a_task_runs_once_in_the_image_and_a_hung_one_is_removed_at_its_timeout(
    runtime: PodmanRuntime, tmp_path: Path
) -> None:
    digest = build(runtime.store, tmp_path, SERVE)
    spec = release("shop-hooks", digest, replicas=1)
    lines: list[str] = []
    say = [
        "/bin/busybox",
        "sh",
        "-c",
        "echo $GREETING from $(/bin/busybox cat /www/healthz); exit 3",
    ]

    done = runtime.run_task(spec, say, 60, lines.append)

    assert (done.exit_code, lines) == (3, ["hi from ok"])
    assert runtime.releases() == []  # a task is not one of the release's replicas

    started = time.monotonic()
    hung = runtime.run_task(spec, ["/bin/busybox", "sleep", "600"], 2, lines.append)

    assert hung.timed_out
    assert time.monotonic() - started < 30
    listed = subprocess.run(
        ["podman", "ps", "-aq"],
        env={**os.environ, **runtime.environment()},
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == []
