"""Jobs on Celery workers: the message, sealing, the artifact store and the worker's side.

The run's side is `conveyor.engine.executors.celery`; `conveyor worker` starts the other.
"""
