"""The process runtime with real processes: an image built here, served on 127.0.0.1."""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.deploy.model import HealthCheck, ReleaseSpec, ReplicaState, ReplicaStatus
from conveyor.deploy.runtimes import supervisor
from conveyor.deploy.runtimes.logs import STAMP_LENGTH, LogLimits
from conveyor.deploy.runtimes.process import ProcessRuntime, is_alive
from conveyor.deploy.runtimes.unpack import unpack_release
from conveyor.errors import ConveyorError
from conveyor.supply.oci import model
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore
from python_base import python_base

WAIT_SECONDS = 15.0  # only keeps a broken test from hanging
FAST = HealthCheck("/healthz", interval=0.1, timeout=1.0, failure_threshold=3)
SERVER = """\
import http.server, os

PORT = int(os.environ["PORT"])
HEALTHY_CHECKS = int(os.environ.get("HEALTHY_CHECKS", "1000000"))
checks = 0

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global checks
        checks += self.path == "/healthz"
        if self.path not in ("/", "/healthz") or checks > HEALTHY_CHECKS:
            self.send_error(404 if self.path != "/healthz" else 500)
            return
        body = f"{PORT} {os.environ.get('APP_VERSION', '?')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer((os.environ["HOST"], PORT), Handler).serve_forever()
"""
CRASH = "raise RuntimeError('boom: no database')\n"
# Says 300 kB at start, then serves.
CHATTY = "for n in range(3000):\n    print(f'{n:05d}', '.' * 93, flush=True)\n" + SERVER


def build(store: LayoutStore, root: Path, main: str, tag: str) -> str:
    """An image whose package `app` is importable only through PYTHONPATH=/app/lib."""
    (root / "lib" / "app").mkdir(parents=True)
    (root / "lib" / "app" / "__main__.py").write_text(main)
    spec = ImageSpec(
        app=AppFiles(root),
        base=python_base(store),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/lib", "APP_VERSION": "v1"},
    )
    return build_image(spec, store, "shop", (tag,)).manifest_digest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def release(release_id: str, digest: str, replicas: int = 2, **env: str) -> ReleaseSpec:
    ports = tuple(free_port() for _ in range(replicas))
    return ReleaseSpec(release_id, "shop", digest, ports, env, readiness=FAST, liveness=FAST)


def get(address: str, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
        return bytes(response.read()).decode()


def eventually(check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while not (value := check()):
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.05)
    return value


def events(runtime: ProcessRuntime, release_id: str) -> list[dict[str, Any]]:
    path = runtime.runs / release_id / supervisor.EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def supervisors_of(runtime: ProcessRuntime, release_id: str) -> list[int]:
    wanted = [supervisor.MODULE, str(runtime.runs / release_id)]
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and is_alive(int(entry.name)):
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if all(part in command for part in wanted):
                    found.append(int(entry.name))
    return found


@pytest.fixture
def store(tmp_path: Path) -> LayoutStore:
    return LayoutStore(tmp_path / "images")


@pytest.fixture
def digest(store: LayoutStore, tmp_path: Path) -> str:
    return build(store, tmp_path / "server", SERVER, "server")


@pytest.fixture
def runtime(tmp_path: Path, store: LayoutStore) -> Iterator[ProcessRuntime]:
    runtime = ProcessRuntime(tmp_path / "state", store)
    yield runtime
    # Stop everything even when the test failed half-way, down to stray replicas.
    for run_dir in runtime.runs.iterdir() if runtime.runs.is_dir() else ():
        pids = [r.pid for r in runtime.status(run_dir.name) if r.pid is not None]
        runtime.stop(run_dir.name)
        for pid in [*pids, *supervisors_of(runtime, run_dir.name)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- unpack -------------------------------------------------------------------------------


def test_unpack_is_keyed_by_digest_and_read_only(
    store: LayoutStore, digest: str, tmp_path: Path
) -> None:
    first = unpack_release(store, "shop", digest, tmp_path / "releases")
    second = unpack_release(store, "shop", digest, tmp_path / "releases")

    assert first == second == tmp_path / "releases" / digest.removeprefix("sha256:")
    main = first / "rootfs" / "app" / "lib" / "app" / "__main__.py"
    assert main.read_text() == SERVER
    assert main.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0
    assert main.parent.stat().st_mode & stat.S_IWUSR == 0  # (root could write anyway)
    image = json.loads((first / "image.json").read_text())
    assert image["Entrypoint"] == ["python", "-m", "app"]
    assert image["WorkingDir"] == "/app"
    assert "PYTHONPATH=/app/lib" in image["Env"]
    assert [p.name for p in (tmp_path / "releases").iterdir()] == [first.name]  # no temp left


def tar_layer(members: list[tarfile.TarInfo], contents: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in members:
            data = contents.get(member.name, b"")
            member.size = len(data) if member.isfile() else 0
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return gzip.compress(buffer.getvalue(), mtime=0)


def entry(name: str, *, link: str | None = None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    return info


def hand_made_image(store: LayoutStore, layers: list[bytes]) -> str:
    config = model.canonical_json({"config": {"Cmd": ["true"]}, "rootfs": {"type": "layers"}})
    store.put_blob("shop", config)
    for layer in layers:
        store.put_blob("shop", layer)
    manifest = model.Manifest(
        config=model.Descriptor.of(model.CONFIG, config),
        layers=tuple(model.Descriptor.of(model.LAYER_TAR_GZIP, layer) for layer in layers),
    ).to_bytes()
    return store.put_manifest("shop", manifest, model.MANIFEST)


def test_unpack_honours_whiteouts_and_keeps_symlinks_inside(
    store: LayoutStore, tmp_path: Path
) -> None:
    lower = tar_layer(
        [entry("etc/a"), entry("etc/b"), entry("opt/x"), entry("opt/y")],
        {"etc/a": b"a", "etc/b": b"b", "opt/x": b"x", "opt/y": b"y"},
    )
    upper = tar_layer(
        [
            entry("etc/.wh.a"),
            entry("opt/.wh..wh..opq"),
            entry("opt/z"),
            entry("bin/sh", link="/etc/b"),
        ],
        {"opt/z": b"z"},
    )
    digest = hand_made_image(store, [lower, upper])

    rootfs = unpack_release(store, "shop", digest, tmp_path / "releases") / "rootfs"

    assert sorted(p.name for p in (rootfs / "etc").iterdir()) == ["b"]
    assert sorted(p.name for p in (rootfs / "opt").iterdir()) == ["z"]
    assert os.readlink(rootfs / "bin" / "sh") == "../etc/b"
    assert (rootfs / "bin" / "sh").read_text() == "b"


@pytest.mark.parametrize(
    ("member", "message"),
    [(entry("../escape"), "unsafe path"), (entry("bin/sh", link="../../../etc/passwd"), "unsafe")],
)
def test_unpack_refuses_paths_out_of_the_image(
    store: LayoutStore, tmp_path: Path, member: tarfile.TarInfo, message: str
) -> None:
    digest = hand_made_image(store, [tar_layer([member], {})])

    with pytest.raises(ConveyorError, match=message):
        unpack_release(store, "shop", digest, tmp_path / "releases")

    assert not (tmp_path / "escape").exists()
    assert list((tmp_path / "releases").iterdir()) == []


# --- running releases ---------------------------------------------------------------------


@pytest.mark.real
def test_replicas_serve_restart_and_stop(runtime: ProcessRuntime, digest: str) -> None:
    spec = release("shop-1", digest, APP_VERSION="v2")
    runtime.start(spec)

    ready = runtime.wait_ready("shop-1", WAIT_SECONDS)

    assert [get(r.address) for r in ready] == [f"{port} v2" for port in spec.ports]
    assert runtime.releases() == ["shop-1"]
    usage = runtime.saturation("shop-1")
    assert usage.memory_bytes > 0 and usage.open_files > 0 and usage.cpu_seconds > 0

    victim = ready[0]
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)

    def restarted() -> ReplicaStatus | None:
        now = runtime.status("shop-1")[0]
        return now if now.state is ReplicaState.READY and now.pid != victim.pid else None

    again = eventually(restarted)
    assert again.restarts == 1
    assert runtime.status("shop-1")[1] == ready[1]  # the other replica was left alone
    kinds = [(e["event"], e["replica"]) for e in events(runtime, "shop-1")]
    assert ("exit", 0) in kinds and ("restart", 0) in kinds
    assert get(again.address) == f"{spec.ports[0]} v2"

    runtime.start(spec)  # idempotent: no second supervisor, no new replicas
    assert len(supervisors_of(runtime, "shop-1")) == 1
    assert [r.pid for r in runtime.status("shop-1")] == [again.pid, ready[1].pid]

    runtime.stop("shop-1")

    pids = [again.pid, ready[1].pid]
    assert [pid for pid in pids if pid is not None and is_alive(pid)] == []
    assert supervisors_of(runtime, "shop-1") == []
    assert runtime.releases() == []
    assert {r.state for r in runtime.status("shop-1")} == {ReplicaState.STOPPED}


@pytest.mark.real
def test_a_replica_failing_its_liveness_check_is_restarted(
    runtime: ProcessRuntime, digest: str
) -> None:
    runtime.start(release("sick-1", digest, replicas=1, HEALTHY_CHECKS="2"))
    first = runtime.wait_ready("sick-1", WAIT_SECONDS)[0]

    eventually(
        lambda: ("restart", 0) in [(e["event"], e["replica"]) for e in events(runtime, "sick-1")]
    )

    kinds = [e["event"] for e in events(runtime, "sick-1")]
    assert kinds.index("unhealthy") < kinds.index("restart")
    assert "failed its liveness check 3 times" in next(
        e["detail"] for e in events(runtime, "sick-1") if e["event"] == "unhealthy"
    )
    assert first.pid is not None and not is_alive(first.pid)
    assert runtime.status("sick-1")[0].restarts >= 1


@pytest.mark.real
def test_a_release_that_crashes_never_becomes_ready(
    runtime: ProcessRuntime, store: LayoutStore, tmp_path: Path
) -> None:
    digest = build(store, tmp_path / "crash", CRASH, "crash")
    runtime.start(release("crash-1", digest, replicas=1))
    # Between a crash and its restart (a backoff of 0.5 s or more) it reads as crashed.
    eventually(lambda: runtime.status("crash-1")[0].state is ReplicaState.CRASHED)

    with pytest.raises(ConveyorError, match=r"replica 0 .* crashed: RuntimeError: boom: no data"):
        runtime.wait_ready("crash-1", timeout=0.0)

    log = (runtime.runs / "crash-1" / "replica-0.log").read_text()
    assert "Traceback" in log


def port_in_use_events(runtime: ProcessRuntime) -> list[dict[str, Any]]:
    return [e for e in events(runtime, "busy-1") if e["event"] == "port-in-use"]


@pytest.mark.real
def test_a_port_in_use_is_reported_and_retried_with_backoff(
    runtime: ProcessRuntime, digest: str
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        spec = ReleaseSpec("busy-1", "shop", digest, (port,), readiness=FAST, liveness=FAST)
        runtime.start(spec)

        busy = eventually(lambda: port_in_use_events(runtime)[2:] and port_in_use_events(runtime))
        replica = runtime.status("busy-1")[0]

    assert replica.state is ReplicaState.CRASHED
    assert replica.detail == f"port {port} is in use"
    assert replica.pid is None and replica.restarts == 0
    gaps = [later["time"] - earlier["time"] for earlier, later in itertools.pairwise(busy)]
    assert gaps[0] >= supervisor.BACKOFF_FIRST and gaps[1] >= 2 * supervisor.BACKOFF_FIRST


def test_replicas_outlive_the_process_that_started_them(
    runtime: ProcessRuntime, store: LayoutStore, digest: str
) -> None:
    spec = release("detached-1", digest, replicas=1)
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from conveyor.deploy.model import HealthCheck, ReleaseSpec
        from conveyor.deploy.runtimes.process import ProcessRuntime
        from conveyor.supply.oci.layout import LayoutStore

        state, images, digest, port = sys.argv[1:]
        fast = HealthCheck(interval=0.1)
        spec = ReleaseSpec("detached-1", "shop", digest, (int(port),), readiness=fast)
        ProcessRuntime(Path(state), LayoutStore(Path(images))).start(spec)
        """
    )
    argv = [str(runtime.state_dir), str(store.root), digest, str(spec.ports[0])]

    subprocess.run([sys.executable, "-c", script, *argv], check=True, timeout=WAIT_SECONDS)

    ready = runtime.wait_ready("detached-1", WAIT_SECONDS)
    assert get(ready[0].address, "/healthz") == f"{spec.ports[0]} v1"


@pytest.mark.real
def test_replica_logs_rotate_by_size_and_keep_a_few_files(
    tmp_path: Path, store: LayoutStore
) -> None:
    digest = build(store, tmp_path / "chatty", CHATTY, "chatty")
    runtime = ProcessRuntime(tmp_path / "state", store, LogLimits(max_bytes=64 * 1024, keep=2))
    try:
        [ready] = runtime.start(release("shop-logs", digest, replicas=1))
        runtime.wait_ready("shop-logs", WAIT_SECONDS)
        assert get(ready.address).endswith("v1")
    finally:
        runtime.stop("shop-logs")

    run_dir = runtime.runs / "shop-logs"
    logs = sorted(path.name for path in run_dir.glob("replica-0.log*"))
    assert logs == ["replica-0.log", "replica-0.log.1", "replica-0.log.2"]
    assert all((run_dir / name).stat().st_size <= 64 * 1024 for name in logs)
    newest = (run_dir / "replica-0.log").read_text().splitlines()
    # The last line written is in the current file, after the time the pump read it.
    assert newest[-1][STAMP_LENGTH:].startswith("02999 ")
