"""Route tables made from releases and shares, and their JSON form in the ledger."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.deploy.model import Backend, MatchRule, RouteTable
from conveyor.deploy.routers.builtin import ROUTE_TABLE

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Share:
    """A release and the part of the traffic it should get."""

    release_id: str
    version: str  # what the pin header or cookie names: the digest's short form
    addresses: tuple[str, ...]
    weight: int


def version_of(digest: str) -> str:
    """What the pin header or cookie names: the digest's first 12 hex digits."""
    return digest.split(":", 1)[-1][:12]


def free_ports(count: int) -> tuple[int, ...]:
    """Ports the kernel says are free now (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind((HOST, 0))
        return tuple(int(probe.getsockname()[1]) for probe in sockets)
    finally:
        for probe in sockets:
            probe.close()


def table(shares: Sequence[Share], matches: Sequence[MatchRule] = ()) -> RouteTable:
    """Shares as a route table; a release with weight 0 stays listed so it can be pinned
    (or reached by an A/B match)."""
    return RouteTable(
        backends=tuple(
            Backend(s.release_id, s.version, s.addresses, s.weight) for s in shares if s.addresses
        ),
        matches=tuple(matches),
    )


def addresses(ports: Sequence[int]) -> tuple[str, ...]:
    return tuple(f"{HOST}:{port}" for port in ports)


def to_json(routes: RouteTable) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ROUTE_TABLE.dump_json(routes))
    return loaded


def from_json(raw: Mapping[str, Any]) -> RouteTable:
    return ROUTE_TABLE.validate_python(dict(raw))


def weights(routes: RouteTable) -> dict[str, int]:
    return {backend.release_id: backend.weight for backend in routes.backends}


def rolling_shares(new: Share, ready: int, replicas: int, previous: Share | None) -> list[Share]:
    """Traffic in proportion to the new release's ready replicas; the rest stays on the
    previous release. Without a previous release the new one takes everything it can."""
    if previous is None:
        return [_with_weight(new, 100 if ready else 0)]
    new_weight = round(100 * ready / replicas)
    return [_with_weight(new, new_weight), _with_weight(previous, 100 - new_weight)]


def _with_weight(share: Share, weight: int) -> Share:
    return Share(share.release_id, share.version, share.addresses, weight)
