"""Evidence as the engine gives it to steps: reports go to the store, baselines come from it."""

from __future__ import annotations

from typing import Any

from conveyor.spec.gates import Gates
from conveyor.spec.images import ImagesConfig
from conveyor.store.store import Store


class RunEvidence:
    """Implements engine.step.Evidence for one job of one run."""

    def __init__(
        self,
        store: Store,
        *,
        run_id: int,
        job_id: str,
        pipeline: str,
        gates: Gates,
        images: ImagesConfig,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._job_id = job_id
        self._pipeline = pipeline
        self._gates = gates
        self._images = images

    @property
    def gates(self) -> Gates:
        return self._gates

    @property
    def images(self) -> ImagesConfig:
        return self._images

    def publish(self, kind: str, content: bytes, summary: dict[str, Any]) -> str:
        digest = self._store.blobs.put_report(content)  # the run's secrets masked
        self._store.add_report(self._run_id, self._job_id, kind, digest, summary)
        return digest

    def baseline(self, kind: str) -> list[bytes]:
        run = self._store.last_successful_run(self._pipeline, self._gates.target_branch)
        if run is None or run.id == self._run_id:
            return []
        return [self._store.blobs.get_bytes(r.digest) for r in self._store.reports(run.id, kind)]
