"""Evaluating a flag for one context: the engine lives in the `conveyor-openfeature`
distribution (packages/conveyor-openfeature), so a service evaluates exactly as the server."""

from conveyor_openfeature.evaluate import *  # noqa: F403
