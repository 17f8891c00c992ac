"""The Celery application both sides use: late acknowledgement, requeue when a worker
is lost, a visibility timeout above the longest job, one task at a time per slot."""

from __future__ import annotations

from collections.abc import Callable

from celery import Celery  # type: ignore[import-untyped]

from conveyor.engine.workers.protocol import TASK_NAME
from conveyor.engine.workers.settings import DEFAULT_VISIBILITY_TIMEOUT


def make_app(broker_url: str, *, visibility_timeout: float = DEFAULT_VISIBILITY_TIMEOUT) -> Celery:
    app = Celery("conveyor", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,  # acknowledged when the job is done, not when received
        task_reject_on_worker_lost=True,  # a worker killed mid-job puts its task back
        worker_prefetch_multiplier=1,  # a worker holds no more jobs than it runs
        task_ignore_result=True,  # results travel through the attempt's Redis keys
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": visibility_timeout},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a broker restart is waited out
        worker_hijack_root_logger=False,
        task_default_queue="default",
    )
    return app


def route(app: Celery, handle_delivery: Callable[[str], str]) -> None:
    """Register the job task on a worker's app."""

    @app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run_job(sealed: str) -> str:
        return handle_delivery(sealed)
