"""The `podman` runtime: a release's image itself, run as one container per replica.

The image is pulled from the layout store into podman's own storage by digest, through
a scratch OCI layout that names only that manifest (its `blobs` is a symlink to the
store's, so nothing is copied and the store is never written). Each replica is
`podman run -d --network host --restart on-failure --read-only`, named
`<release id>-<index>` and labelled with its release, index, port and readiness path:
the containers themselves are the state, so a new Conveyor process finds them again with
`podman ps`. As under the process runtime, the root is read-only (with a tmpfs at /tmp,
/var/tmp, /run) and the environment's data folder is mounted writable at /data
(DATA_DIR=/data).

    <state_dir>/containers.conf, storage.conf   podman's configuration (docs/ENVIRONMENT.md)
    <state_dir>/storage/                        podman's graphroot (images, containers)
    /tmp/cvp-<hash of state_dir>/               podman's runroot: short, or conmon stalls
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.deploy.model import HealthCheck, ReleaseSpec, ReplicaState, ReplicaStatus, Saturation
from conveyor.deploy.runtimes.base import RuntimeSite
from conveyor.deploy.runtimes.expand import expand_references, has_references
from conveyor.deploy.runtimes.probes import probe_ok
from conveyor.deploy.runtimes.sandbox import DATA_MOUNT
from conveyor.deploy.runtimes.tasks import TaskResult, kill_group, run_streaming
from conveyor.deploy.runtimes.usage import replicas_usage
from conveyor.errors import ConveyorError, InfrastructureError, NotFoundError
from conveyor.supply.oci.containerfile import CONTAINERS_CONF, STORAGE_CONF
from conveyor.supply.oci.interpreter import check_interpreter, labels_of
from conveyor.supply.oci.layout import LayoutStore
from conveyor.supply.oci.model import ANNOTATION_REF_NAME, MANIFEST, Manifest
from conveyor.supply.oci.store import image_config

HOST = "127.0.0.1"
LABEL_RELEASE = "conveyor.release"
LABEL_INDEX = "conveyor.replica"
LABEL_PORT = "conveyor.port"
LABEL_READINESS = "conveyor.readiness"
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_PULL_REF = "image"
_SHORT_TMP = Path("/tmp")  # noqa: S108 (the runroot must be a short path)
_POLL = 0.1
_STOP_GRACE = 2  # seconds podman waits after SIGTERM before SIGKILL
_TIMEOUT = 120.0  # for any one podman command


class PodmanRuntime:
    name = "podman"

    def __init__(self, state_dir: Path, store: LayoutStore, podman: str = "podman") -> None:
        self.state_dir = state_dir.absolute()
        self.store = store
        self.podman = podman
        key = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        self.runroot = _SHORT_TMP / f"cvp-{key}"

    # --- the Runtime protocol ---------------------------------------------------------

    def start(self, release: ReleaseSpec) -> list[ReplicaStatus]:
        _check_release_id(release.release_id)
        existing = {_index(c) for c in self._containers(release.release_id)}
        missing = [i for i in range(release.replicas) if i not in existing]
        if missing:
            config = image_config(self.store, release.repository, release.digest)
            check_interpreter(labels_of(config), f"{release.repository}@{release.digest}")
            image = self._pull(release.repository, release.digest)
            command = command_of(config)
            for index in missing:
                self._run_replica(release, index, image, command)
        return self.status(release.release_id)

    def status(self, release_id: str) -> list[ReplicaStatus]:
        containers = self._containers(release_id)
        if not containers:
            raise NotFoundError(f"no containers of release {release_id} in podman")
        return sorted((_replica_status(c) for c in containers), key=lambda r: r.index)

    def wait_ready(self, release_id: str, timeout: float) -> list[ReplicaStatus]:
        deadline = time.monotonic() + timeout
        while True:
            replicas = self.status(release_id)
            if all(r.state is ReplicaState.READY for r in replicas):
                return replicas
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        raise ConveyorError(
            f"release {release_id} is not ready after {timeout:g} s: "
            + "; ".join(_describe(r) for r in replicas),
            hint=f"see the replicas' output with `podman logs {release_id}-<n>` "
            f"(CONTAINERS_CONF={self.state_dir / 'containers.conf'}, "
            f"CONTAINERS_STORAGE_CONF={self.state_dir / 'storage.conf'})",
        )

    def saturation(self, release_id: str) -> Saturation:
        """Each container's process tree, from its main process (runc runs it as a host
        pid) down."""
        return replicas_usage(r.pid for r in self.status(release_id) if r.pid is not None)

    def stop(self, release_id: str) -> None:
        _check_release_id(release_id)
        ids = self._container_ids(release_id)
        if not ids:
            raise NotFoundError(f"no containers of release {release_id} in podman")
        self._podman("rm", "-f", "-t", str(_STOP_GRACE), *ids)

    def replica_events(self, release_id: str) -> list[dict[str, Any]]:
        """Restarts as podman counts them (podman restarts crashed containers itself)."""
        events: list[dict[str, Any]] = []
        for replica in self.status(release_id):
            if replica.restarts:
                events.append(
                    {
                        "time": time.time(),
                        "event": "restarted",
                        "replica": replica.index,
                        "restarts": replica.restarts,
                    }
                )
        return events

    def releases(self) -> list[str]:
        listed = self._podman("ps", "-a", "--filter", f"label={LABEL_RELEASE}", "--format", "json")
        containers: list[dict[str, Any]] = json.loads(listed or "[]")
        return sorted({str(c["Labels"][LABEL_RELEASE]) for c in containers})

    def run_task(
        self,
        release: ReleaseSpec,
        argv: Sequence[str],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> TaskResult:
        _check_release_id(release.release_id)
        image = self._pull(release.repository, release.digest)
        name = f"{release.release_id}-task"
        with contextlib.suppress(InfrastructureError):  # one left by a killed controller
            self._podman("rm", "-f", "-t", "0", name)
        command = [self._executable(), *task_arguments(release, image, name, argv)]
        env = {**os.environ, **release.secret_env, **self.environment()}

        def kill(process: subprocess.Popen[bytes]) -> None:
            # The client's death leaves the container running: remove it first.
            with contextlib.suppress(InfrastructureError, subprocess.TimeoutExpired):
                self._podman("rm", "-f", "-t", str(_STOP_GRACE), name)
            kill_group(process)

        return run_streaming(
            command, cwd=None, env=env, timeout=timeout, on_line=on_line, kill=kill
        )

    # --- internals ---------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        """CONTAINERS_CONF and CONTAINERS_STORAGE_CONF of this runtime's podman."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(mode=0o700, exist_ok=True)
        containers_conf = self.state_dir / "containers.conf"
        storage_conf = self.state_dir / "storage.conf"
        storage = STORAGE_CONF.format(graphroot=self.state_dir / "storage", runroot=self.runroot)
        for path, text in ((containers_conf, CONTAINERS_CONF), (storage_conf, storage)):
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
        return {
            "CONTAINERS_CONF": str(containers_conf),
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
        }

    def _podman(self, *arguments: str, secrets: Mapping[str, str] | None = None) -> str:
        """Run podman; `secrets` go in its environment only (`--env NAME` passes one on),
        never on its command line, which `ps` shows to every user."""
        done = subprocess.run(
            [self._executable(), *arguments],
            capture_output=True,
            text=True,
            check=False,
            timeout=_TIMEOUT,
            env={**os.environ, **(secrets or {}), **self.environment()},
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise InfrastructureError(f"podman {arguments[0]} failed: {' '.join(tail)}")
        return done.stdout

    def _executable(self) -> str:
        executable = shutil.which(self.podman)
        if executable is None:
            raise ConveyorError(
                f"the podman runtime needs {self.podman}, which is not installed (or on PATH)",
                hint="apt-get install podman runc (or use the process runtime)",
            )
        return executable

    def _container_ids(self, release_id: str) -> list[str]:
        listed = self._podman("ps", "-a", "-q", "--filter", f"label={LABEL_RELEASE}={release_id}")
        return listed.split()

    def _containers(self, release_id: str) -> list[dict[str, Any]]:
        ids = self._container_ids(release_id)
        if not ids:
            return []
        inspected: list[dict[str, Any]] = json.loads(self._podman("inspect", *ids))
        return inspected

    def _pull(self, repository: str, digest: str) -> str:
        """Podman's image id (the config digest's hex), pulled from the store if missing."""
        manifest_bytes = self.store.get_blob(repository, digest)
        image_id = Manifest.from_bytes(manifest_bytes).config.digest.removeprefix("sha256:")
        with contextlib.suppress(InfrastructureError):  # `image exists` fails when absent
            self._podman("image", "exists", image_id)
            return image_id
        # podman names an image pulled from `oci:` by the layout's path, which must then
        # be a valid reference: a lowercase folder of our own naming.
        layout = self.runroot.with_name(f"{self.runroot.name}-pull-{os.getpid()}")
        shutil.rmtree(layout, ignore_errors=True)
        layout.mkdir(mode=0o700)
        try:
            (layout / "blobs").symlink_to((self.store.root / "blobs").absolute())
            (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
            entry = {
                "mediaType": MANIFEST,
                "digest": digest,
                "size": len(manifest_bytes),
                "annotations": {ANNOTATION_REF_NAME: _PULL_REF},
            }
            index = {"schemaVersion": 2, "manifests": [entry]}
            (layout / "index.json").write_text(json.dumps(index))
            self._podman("pull", "--quiet", f"oci:{layout}:{_PULL_REF}")
        finally:
            shutil.rmtree(layout, ignore_errors=True)
        return image_id

    def _run_replica(
        self, release: ReleaseSpec, index: int, image: str, command: ImageCommand | None = None
    ) -> None:
        arguments = replica_arguments(release, index, image, command)
        self._podman(*arguments, secrets=release.secret_env)


def replica_arguments(
    release: ReleaseSpec, index: int, image: str, command: ImageCommand | None = None
) -> list[str]:
    """`podman run` of one replica. A secret is passed by name only (`--env=NAME`): podman
    takes its value from its own environment. An image command naming `$(PORT)` or
    another variable (`expand.py`) is given expanded: podman does not expand it."""
    port = release.ports[index]
    labels = {
        LABEL_RELEASE: release.release_id,
        LABEL_INDEX: str(index),
        LABEL_PORT: str(port),
        LABEL_READINESS: release.readiness.path or "",  # empty: a TCP connect
    }
    env = {**release.plain_env, "PORT": str(port), "HOST": HOST}
    argv = ["run", "-d", "--name", f"{release.release_id}-{index}", "--network", "host"]
    argv += ["--restart", "on-failure", "--read-only", "--read-only-tmpfs"]
    if release.data_dir is not None:
        env |= {"DATA_DIR": DATA_MOUNT, "CONVEYOR_DATA_DIR": DATA_MOUNT}
        argv += ["--volume", f"{release.data_dir}:{DATA_MOUNT}:rw,z"]
    argv += [f"--label={key}={value}" for key, value in labels.items()]
    argv += [f"--env={key}={value}" for key, value in env.items()]
    argv += [f"--env={name}" for name in release.secret_env]
    if command is None or not has_references([*command.entrypoint, *command.cmd]):
        return [*argv, image]
    known = {**command.env, **env}
    entrypoint = expand_references(command.entrypoint, known)
    return [
        *argv,
        "--entrypoint",
        json.dumps(entrypoint),
        image,
        *expand_references(command.cmd, known),
    ]


@dataclass(frozen=True)
class ImageCommand:
    """An image config's Entrypoint, Cmd and Env."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]


def command_of(config: dict[str, Any]) -> ImageCommand:
    """The Entrypoint, Cmd and Env of an image config document."""
    settings = config.get("config") or {}
    env = dict(str(pair).partition("=")[::2] for pair in settings.get("Env") or [])
    entrypoint, cmd = settings.get("Entrypoint") or [], settings.get("Cmd") or []
    return ImageCommand(list(entrypoint), list(cmd), env)


def task_arguments(release: ReleaseSpec, image: str, name: str, argv: Sequence[str]) -> list[str]:
    """`podman run` of a one-off command in the release's image: a replica's arguments
    (`replica_arguments`: its env, secrets by name, mounts) in the foreground, removed when
    done, unlabelled (not one of the release's replicas), with `argv` as its entrypoint,
    its `$(NAME)` references expanded from that env as the process runtime does."""
    replica = replica_arguments(release, 0, image)
    kept: list[str] = []
    skip = 0
    for argument in replica[1:-1]:  # `run` ... image
        if skip:
            skip -= 1
        elif argument in ("-d", "--name", "--restart"):
            skip = 0 if argument == "-d" else 1
        elif not argument.startswith("--label="):
            kept.append(argument)
    known = dict(
        argument.removeprefix("--env=").partition("=")[::2]
        for argument in kept
        if argument.startswith("--env=") and "=" in argument.removeprefix("--env=")
    )
    command = expand_references(argv, known)
    entrypoint = ["--entrypoint", json.dumps(command[:1])]
    return ["run", "--rm", "--name", name, *entrypoint, *kept, image, *command[1:]]


def _check_release_id(release_id: str) -> None:
    if not _RELEASE_ID.match(release_id):
        raise ConveyorError(
            f"invalid release id {release_id!r}",
            hint="letters, digits, '.', '_' and '-', starting with a letter or digit",
        )


def _index(container: dict[str, Any]) -> int:
    return int(container["Config"]["Labels"][LABEL_INDEX])


def _replica_status(container: dict[str, Any]) -> ReplicaStatus:
    labels = container["Config"]["Labels"]
    state = container["State"]
    address = f"{HOST}:{labels[LABEL_PORT]}"
    status = str(state.get("Status") or "")
    pid = int(state.get("Pid") or 0) or None
    restarts = int(container.get("RestartCount") or 0)
    replica = ReplicaStatus(_index(container), address, ReplicaState.STARTING, restarts, pid)
    if status == "running":
        check = HealthCheck(labels.get(LABEL_READINESS) or None, timeout=1.0)
        ready = probe_ok(int(labels[LABEL_PORT]), check)
        return _with(replica, ReplicaState.READY if ready else ReplicaState.STARTING, "")
    if status in ("created", "configured", "initialized"):
        return _with(replica, ReplicaState.STARTING, status)
    exit_code = int(state.get("ExitCode") or 0)
    if status in ("exited", "stopped") and exit_code != 0:
        return _with(replica, ReplicaState.CRASHED, f"exited with {exit_code}")
    return _with(replica, ReplicaState.STOPPED, status)


def _with(replica: ReplicaStatus, state: ReplicaState, detail: str) -> ReplicaStatus:
    return ReplicaStatus(
        replica.index, replica.address, state, replica.restarts, replica.pid, detail
    )


def _describe(replica: ReplicaStatus) -> str:
    detail = f": {replica.detail}" if replica.detail else ""
    return f"replica {replica.index} ({replica.address}) {replica.state}{detail}"


def from_site(site: RuntimeSite) -> PodmanRuntime:
    """The registry's factory: containers' state in the runtime root's `podman/`."""
    return PodmanRuntime(site.root / "podman", site.images)
