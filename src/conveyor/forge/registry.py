"""The forges by name: `FORGE_FACTORIES` in conveyor/backends.py (which `forge.kind` in
conveyor.yml is checked against), made on demand."""

from __future__ import annotations

from conveyor.backends import FORGE_FACTORIES, Backends
from conveyor.forge.model import Forge

FORGES: Backends[str, Forge] = Backends("forge", FORGE_FACTORIES)


def forge_named(kind: str) -> Forge:
    """The forge `kind` (github, gitlab, gitea, forgejo); an unknown one is refused."""
    return FORGES.create(kind, kind)
