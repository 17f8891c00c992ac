"""The OpenFeature provider, kept importable here: it ships as the `conveyor-openfeature`
distribution (`from conveyor_openfeature import ConveyorProvider`)."""

from conveyor_openfeature import PROVIDER_NAME, ConveyorProvider, context_of

__all__ = ["PROVIDER_NAME", "ConveyorProvider", "context_of"]
