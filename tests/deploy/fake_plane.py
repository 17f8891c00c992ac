"""The service's environments on the in-memory data plane of fakes.py: every controller
the service builds gets the same fake runtime and router (as the real ones are daemons
that outlive a command), so `conveyor deploy`, `env ...` and `release ...` run in-process
without starting anything."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conveyor.service import environments
from deploy.fakes import FakeClock, FakeRouter, FakeRuntime


@dataclass(frozen=True)
class FakePlane:
    runtime: FakeRuntime
    router: FakeRouter


def use_fake_plane(monkeypatch: pytest.MonkeyPatch) -> FakePlane:
    plane = FakePlane(FakeRuntime(), FakeRouter(FakeClock()))
    monkeypatch.setattr(environments, "make_runtime", lambda project, spec: plane.runtime)
    monkeypatch.setattr(
        environments, "make_router", lambda project, name, spec, store: plane.router
    )
    return plane
