"""Prometheus file-based service discovery (observe/file_sd.py): the JSON Prometheus reads,
replaced atomically and only when the targets changed."""

from __future__ import annotations

import json
from pathlib import Path

from conveyor.observe.file_sd import FileSd, release_group, router_group


def test_groups_are_written_in_prometheus_form_only_when_they_change(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "conveyor.json"
    sd = FileSd(path)
    router = router_group("staging", "builtin", 41000)
    assert router is not None
    release = release_group("staging", "staging-app-1", ["127.0.0.1:40002", "127.0.0.1:40001"])

    assert sd.update([release, router])
    written = path.stat().st_mtime_ns
    assert not sd.update([router, release])  # the same groups, in another order
    assert path.stat().st_mtime_ns == written
    assert json.loads(path.read_text()) == [
        {
            "targets": ["127.0.0.1:41000"],
            "labels": {
                "environment": "staging",
                "component": "router",
                "__metrics_path__": "/-/metrics",
            },
        },
        {
            "targets": ["127.0.0.1:40001", "127.0.0.1:40002"],
            "labels": {
                "environment": "staging",
                "release": "staging-app-1",
                "component": "release",
                "__metrics_path__": "/metrics",
            },
        },
    ]
    assert sd.update([router, release_group("staging", "staging-app-2", [])])
    assert len(json.loads(path.read_text())) == 1  # a release with no replica is left out
    assert sorted(p.name for p in path.parent.iterdir()) == ["conveyor.json"]  # no leftovers


def test_a_router_without_a_known_metrics_path_is_not_listed() -> None:
    assert router_group("staging", "envoy", 41000) is None
    assert router_group("staging", "haproxy", 41000) is not None
