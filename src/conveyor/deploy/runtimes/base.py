"""The runtime Protocol: start, inspect and stop a release's replicas.

Backends, one module each and listed in `registry.py`: `process` (the embedded default:
the image's layers unpacked into an immutable release folder keyed by digest, replicas
run as supervised processes) and `podman` (the image itself as containers). A Kubernetes
runtime later implements the same Protocol. Replicas outlive the Conveyor process that
started them: the data plane keeps serving when the control plane is killed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from conveyor.deploy.model import ReleaseSpec, ReplicaStatus, Saturation
from conveyor.deploy.runtimes.tasks import TaskResult

if TYPE_CHECKING:
    from conveyor.supply.oci.layout import LayoutStore


@dataclass(frozen=True)
class RuntimeSite:
    """What every runtime backend is made from (its factory's one argument)."""

    root: Path  # <state_dir>/runtime, shared by environments; a backend may use a subfolder
    images: LayoutStore  # where releases' images are read from


@runtime_checkable
class Runtime(Protocol):
    name: str

    def start(self, release: ReleaseSpec) -> list[ReplicaStatus]:
        """Start the release (idempotent: an already running release is left alone)."""
        ...

    def status(self, release_id: str) -> list[ReplicaStatus]: ...

    def wait_ready(self, release_id: str, timeout: float) -> list[ReplicaStatus]:
        """Block until every replica is READY; raise ConveyorError naming the failing ones."""
        ...

    def saturation(self, release_id: str) -> Saturation: ...

    def stop(self, release_id: str) -> None: ...

    def replica_events(self, release_id: str) -> list[dict[str, Any]]:
        """What happened to the replicas (exits, restarts, readiness), oldest first; each
        has at least `time` (epoch seconds), `event` and `replica`."""
        ...

    def releases(self) -> list[str]:
        """Release ids this runtime is running (to reconcile after a restart)."""
        ...

    def run_task(
        self,
        release: ReleaseSpec,
        argv: Sequence[str],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> TaskResult:
        """Run `argv` once inside the release's image, as a replica would run (its env and
        secrets, its data folder) but with no port to serve; each line of its output goes
        to `on_line`. Past `timeout` seconds it is killed, with all it started (a release
        hook: `deploy/hooks.py`)."""
        ...
