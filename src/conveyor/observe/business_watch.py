"""The continuous watch's consumer for business metrics: every environment with
`business.metrics` has its running releases scraped into the store, at most every
`EVERY` seconds (a scrape is an HTTP request per replica), so `conveyor business` and
the UI show each release's figures over time even when nobody asks."""

from __future__ import annotations

from pathlib import Path

from conveyor.observe.business_figures import sample_environment
from conveyor.service.environments import current_environments
from conveyor.service.project import Project
from conveyor.store.store import Store

EVERY = 10.0  # seconds between two scrapes of one environment
_last: dict[tuple[Path, str], float] = {}


def sample_on_watch(project: Project, store: Store, environment: str, now: float) -> None:
    """A `watch.CONSUMERS` entry: `function(project, store, environment, now)`."""
    key = (project.spec_path, environment)
    if now - _last.get(key, float("-inf")) < EVERY:
        return
    spec = current_environments(project).get(environment)
    if spec is None or spec.business is None or not spec.business.metrics:
        return
    _last[key] = now
    sample_environment(project, store, environment, spec.business, spec)
