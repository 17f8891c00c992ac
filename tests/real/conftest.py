"""Real components for the tests under tests/real: a registry (CNCF distribution 2.8).

`registry` starts `docker-registry serve` on a free 127.0.0.1 port with its storage in
`registry_root` (a temp dir), waits for `/v2/` to answer, yields its URL and stops it by
pid. A machine without docker-registry fails these tests: it is a declared dependency
of the test suite (apt `docker-registry`), not an optional extra.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import stop_server, wait_until_answering


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    """Where the `registry` of this test keeps its blobs and manifests."""
    return tmp_path / "registry-storage"


@pytest.fixture
def registry(tmp_path: Path, registry_root: Path) -> Iterator[str]:
    """The URL (`http://127.0.0.1:PORT`) of a fresh, empty, running registry."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is not installed: apt-get install -y docker-registry")
    port = free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {registry_root}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log_path = tmp_path / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{url}/v2/", "docker-registry", log_path)
        yield url
    finally:
        stop_server(process)
