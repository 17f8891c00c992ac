"""Conveyor's OpenFeature provider for Python services: flags evaluated in process.

    pip install conveyor-openfeature

    from openfeature import api
    from conveyor_openfeature import ConveyorProvider

    api.set_provider_and_wait(ConveyorProvider("http://127.0.0.1:4242", "production"))

A distribution of its own, so a service installs the provider, the flag model and the
evaluation engine, not Conveyor. Conveyor's server evaluates with the same modules
(`conveyor.flags.model` and `conveyor.flags.evaluate` re-export them), so the service and
the server give the same answer for the same definitions.
"""

from conveyor_openfeature.provider import PROVIDER_NAME, ConveyorProvider, context_of

__all__ = ["PROVIDER_NAME", "ConveyorProvider", "context_of"]
