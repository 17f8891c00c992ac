"""Executors run one command for a job; one module per backend, registered in one dict."""

from __future__ import annotations

from conveyor.engine.executors.base import Executor
from conveyor.engine.executors.celery import CeleryExecutor
from conveyor.engine.executors.local import LocalExecutor

EXECUTORS: dict[str, type[Executor]] = {
    "local": LocalExecutor,
    "celery": CeleryExecutor,
}
