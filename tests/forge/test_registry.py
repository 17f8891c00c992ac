"""Every forge in the table is made by name, named as asked, and `forge.kind` in
conveyor.yml accepts exactly the table's names."""

from __future__ import annotations

import pytest

from conveyor.backends import FORGE_FACTORIES
from conveyor.errors import ConveyorError
from conveyor.forge.registry import forge_named
from conveyor.spec.forge import ForgeConfig


@pytest.mark.parametrize("kind", sorted(FORGE_FACTORIES))
def test_each_forge_is_made_by_its_name(kind: str) -> None:
    forge = forge_named(kind)
    assert forge.name == kind
    assert forge.merge_request_ref(5).endswith("/5/head")
    ForgeConfig(kind=kind, repository="acme/shop", clone_url="https://example.org/acme/shop")


def test_an_unknown_forge_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ConveyorError, match="unknown forge 'gogs' \\(known: forgejo, gitea"):
        forge_named("gogs")
