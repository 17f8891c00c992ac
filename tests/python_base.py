"""One cache of Conveyor's Python base image for the whole suite (and across runs).

The base is built from Debian packages that `apt-get download` fetches; its cache is
keyed by the state of apt's lists and checked against apt's SHA256s, so sharing it
between tests, xdist workers and sessions changes no result, only the time: every test
that builds an image on the default base would otherwise download and pack it again.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from conveyor.supply.oci.build import BaseImage, host_architecture, run_command
from conveyor.supply.oci.debian_base import CACHE_ENV, ensure_python_base
from conveyor.supply.oci.store import ImageStore

SHARED_CACHE = Path(tempfile.gettempdir()) / "conveyor-tests-python-base"


@pytest.fixture(autouse=True)
def _shared_python_base_cache(
    _hermetic_conveyor_env: None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(SHARED_CACHE))
    return SHARED_CACHE


def python_base(store: ImageStore) -> BaseImage:
    """Conveyor's Python base in `store` (built once into the shared cache, then copied),
    for tests that build images with the library rather than the build-image step."""
    built = ensure_python_base(store, SHARED_CACHE, host_architecture())
    return BaseImage(built.repository, built.digest)


WHEELHOUSE = Path(sys.prefix) / "wheelhouse"  # `make demo` fills it from the shop's locks


def wheelhouse_pip(argv: list[str], env: Mapping[str, str]) -> None:
    """A CommandRunner that installs from the venv's wheelhouse when there is one (the
    shop's locked wheels, offline), else from the index."""
    offline = {"PIP_FIND_LINKS": str(WHEELHOUSE), "PIP_NO_INDEX": "1"}
    run_command(argv, {**env, **(offline if WHEELHOUSE.is_dir() else {})})
