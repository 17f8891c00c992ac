"""A feature flag's definition (strategies, constraints, segments, variants): the model
lives in the `conveyor-openfeature` distribution (packages/conveyor-openfeature), which
services install to evaluate flags in process, so the server and the provider share it."""

from conveyor_openfeature.model import *  # noqa: F403
