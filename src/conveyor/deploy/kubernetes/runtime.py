"""The `kubernetes` runtime's registry entry (`runtime: kubernetes` in conveyor.yml).

On a cluster, Argo Rollouts runs the release: it starts the pods, moves the traffic and
asks Conveyor's judge (render.py). So Conveyor's own release controller, which drives
replicas and a router step by step through this Protocol, does not drive a Kubernetes
environment: `conveyor k8s apply ENV IMAGE` renders, admits and applies instead, and
reads the Rollout's status back (docs/kubernetes.md). Each Protocol method says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from conveyor.deploy.model import ReleaseSpec, ReplicaStatus, Saturation
from conveyor.deploy.runtimes.base import RuntimeSite
from conveyor.deploy.runtimes.tasks import TaskResult
from conveyor.errors import ConveyorError


class KubernetesRuntime:
    name = "kubernetes"

    def __init__(self, site: RuntimeSite) -> None:
        self.site = site

    def _argo_drives(self) -> NoReturn:
        raise ConveyorError(
            "a runtime: kubernetes environment is released by Argo Rollouts, not by "
            "Conveyor's controller",
            hint="`conveyor k8s render ENV IMAGE` shows the objects, `conveyor k8s apply "
            "ENV IMAGE` applies them (docs/kubernetes.md)",
        )

    def start(self, release: ReleaseSpec) -> list[ReplicaStatus]:
        self._argo_drives()

    def status(self, release_id: str) -> list[ReplicaStatus]:
        self._argo_drives()

    def wait_ready(self, release_id: str, timeout: float) -> list[ReplicaStatus]:
        self._argo_drives()

    def saturation(self, release_id: str) -> Saturation:
        self._argo_drives()

    def stop(self, release_id: str) -> None:
        self._argo_drives()

    def replica_events(self, release_id: str) -> list[dict[str, Any]]:
        return []  # Kubernetes keeps the pods' events: `kubectl get events`

    def releases(self) -> list[str]:
        return []  # nothing runs on this machine to reconcile

    def run_task(
        self,
        release: ReleaseSpec,
        argv: Sequence[str],
        timeout: float,
        on_line: Callable[[str], None],
    ) -> TaskResult:
        self._argo_drives()


def from_site(site: RuntimeSite) -> KubernetesRuntime:
    return KubernetesRuntime(site)
