"""Imported by the fork server of the run queue (`run_process.py`) before it forks any run:
what a run would otherwise import, each time, in each run's process. Never imported by
the server itself, which does not run pipelines.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
from multiprocessing import spawn

import conveyor.server.run_process  # noqa: F401  (the function each fork runs)

# The run path, imported once by the fork server (which imports this module): the
# service, what a run of `run:` jobs imports lazily on its way, and what the built-in
# steps import lazily when they run and finalize (found by listing the modules a warm
# rerun of examples/shop loads in a process that had loaded every step already).
RUN_PATH = (
    "conveyor.service.queued_runs",
    "conveyor.engine.executors.local",
    "sqlalchemy.dialects.sqlite.pysqlite",
)
STEP_PATH = (
    "conveyor.steps.rules",
    "conveyor.supply.attest",
    "conveyor.supply.imagescan",
    "conveyor.supply.oci.registry",
    "conveyor.supply.osv.scan",
    "conveyor.supply.packages",
    "conveyor.supply.referrers",
    "conveyor.supply.sbom",
)


def _preload() -> None:
    from conveyor.steps.registry import STEPS

    for module in RUN_PATH:
        importlib.import_module(module)
    for name in STEPS:  # each step is imported once, and kept: forks inherit it
        with contextlib.suppress(ImportError):
            STEPS[name]
    for module in STEP_PATH:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _keep_main_module() -> None:
    """multiprocessing runs the parent's main module again in each child (as
    `__mp_main__`), so that functions defined there unpickle: here the `conveyor` script,
    or a program embedding the server, once per run. A run's function lives in this
    package, so this fork server's children skip it (the server itself is untouched)."""

    def skip(_main: str) -> None:
        return None

    # Private hooks of multiprocessing.spawn (3.11 to 3.13), in this process only.
    setattr(spawn, "_fixup_main_from_path", skip)  # noqa: B010
    setattr(spawn, "_fixup_main_from_name", skip)  # noqa: B010


_keep_main_module()
_preload()
# Everything imported so far lives as long as the fork server: the collector need not walk
# it again in each run's process, and pages it does not write stay shared by the forks.
gc.freeze()
