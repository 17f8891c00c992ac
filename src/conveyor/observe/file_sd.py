"""Prometheus file-based service discovery for the routers' and releases' metrics.

A real Prometheus may do the scraping instead of (or beside) the continuous watch: its
`file_sd_configs` reads the JSON this module writes, `[{"targets": [...], "labels":
{...}}]`, and re-reads it whenever it changes. Each environment's router is one group
(labels `environment`, `component="router"`, and the router's metrics path), each running
release one group of its replicas (labels `environment`, `release`, `component="release"`,
path `/metrics`). The file is replaced atomically (written aside, then renamed), and only
when the groups changed, so Prometheus never reads half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Where each router backend serves its Prometheus metrics, on its admin port.
ROUTER_METRICS_PATHS: Mapping[str, str] = {"builtin": "/-/metrics", "haproxy": "/metrics"}
RELEASE_METRICS_PATH = "/metrics"
METRICS_PATH_LABEL = "__metrics_path__"  # Prometheus's own: the path it scrapes


@dataclass(frozen=True)
class TargetGroup:
    targets: tuple[str, ...]  # host:port
    labels: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {"targets": list(self.targets), "labels": dict(self.labels)}


def router_group(environment: str, router: str, admin_port: int) -> TargetGroup | None:
    """The router of `environment`; None for a router whose metrics path is unknown."""
    path = ROUTER_METRICS_PATHS.get(router)
    if path is None:
        return None
    labels = {"environment": environment, "component": "router", METRICS_PATH_LABEL: path}
    return TargetGroup((f"127.0.0.1:{admin_port}",), labels)


def release_group(environment: str, release_id: str, addresses: Sequence[str]) -> TargetGroup:
    labels = {
        "environment": environment,
        "release": release_id,
        "component": "release",
        METRICS_PATH_LABEL: RELEASE_METRICS_PATH,
    }
    return TargetGroup(tuple(sorted(addresses)), labels)


def render(groups: Sequence[TargetGroup]) -> str:
    ordered = sorted(groups, key=lambda g: (sorted(g.labels.items()), g.targets))
    return json.dumps([group.as_json() for group in ordered if group.targets], indent=2) + "\n"


class FileSd:
    """The discovery file at `path`, rewritten only when its groups change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._written: str | None = None

    def update(self, groups: Sequence[TargetGroup]) -> bool:
        """Write `groups` if they differ from the file's; whether it was written."""
        text = render(groups)
        if text == self._written:
            return False
        replace_atomically(self.path, text)
        self._written = text
        return True


def replace_atomically(path: Path, text: str) -> None:
    """Write `text` beside `path`, then rename it over `path` (readers see old or new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # Prometheus may run as another user
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
