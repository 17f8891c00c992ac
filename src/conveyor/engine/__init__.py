"""The engine: planning, scheduling, executors, the job cache and secret masking."""
