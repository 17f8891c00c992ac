"""PyPI names and versions, and OSV `ECOSYSTEM` ranges evaluated in PEP 440 order.

OSV semantics (https://ossf.github.io/osv-schema/#evaluation): the events of a range are
sorted by version; `introduced` opens an affected span ("0" means from the very first
version), `fixed` closes it (the fixed version is not affected), `last_affected` closes it
after that version (inclusive), and `limit` caps the whole range (exclusive).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from packaging.utils import canonicalize_name, canonicalize_version
from packaging.version import InvalidVersion, Version

START = "0"  # OSV's `introduced: "0"`: before every version
_ZERO = Version("0")


class EventKind(StrEnum):
    INTRODUCED = "introduced"
    FIXED = "fixed"
    LAST_AFFECTED = "last_affected"
    LIMIT = "limit"


def normalize_name(name: str) -> str:
    """The PEP 503 name: `Requests`, `requests_toolbelt` and `JW.Util` all compare normalised."""
    return canonicalize_name(name)


@lru_cache(maxsize=65536)
def parse_version(text: str) -> Version | None:
    """The PEP 440 version, or None for a string PEP 440 cannot order (e.g. `2019-09-12`)."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


@lru_cache(maxsize=65536)
def canonical_version(text: str) -> str:
    """A comparable string: `2.19.0` and `2.19` agree; an invalid version stays as written.

    Explicit `versions` lists repeat heavily across advisories (a package's whole release
    history per advisory), hence the cache.
    """
    return canonicalize_version(text.strip())


@dataclass(frozen=True)
class Event:
    kind: EventKind
    version: Version | None  # None only for `introduced: "0"`

    def sort_key(self) -> tuple[int, Version]:
        return (0, _ZERO) if self.version is None else (1, self.version)


def parse_event(kind: EventKind, text: str) -> Event | None:
    """An event with its version parsed; None when the version does not parse."""
    if kind is EventKind.INTRODUCED and text.strip() == START:
        return Event(kind, None)
    version = parse_version(text.strip())
    return None if version is None else Event(kind, version)


@dataclass(frozen=True)
class VersionRange:
    """One `ECOSYSTEM` range, its events sorted once."""

    events: tuple[Event, ...]

    @classmethod
    def of(cls, events: Iterable[Event]) -> VersionRange:
        return cls(tuple(sorted(events, key=Event.sort_key)))

    def contains(self, version: Version) -> bool:
        limits = [e.version for e in self.events if e.kind is EventKind.LIMIT and e.version]
        if limits and not any(version < limit for limit in limits):
            return False
        affected = False
        for event in self.events:
            if event.kind is EventKind.INTRODUCED:
                if event.version is None or version >= event.version:
                    affected = True
            elif event.kind is EventKind.FIXED:
                if event.version is not None and version >= event.version:
                    affected = False
            elif (
                event.kind is EventKind.LAST_AFFECTED
                and event.version is not None
                and version > event.version
            ):
                affected = False
        return affected

    @property
    def fixed_versions(self) -> list[Version]:
        return [e.version for e in self.events if e.kind is EventKind.FIXED and e.version]


def smallest_above(versions: Sequence[Version], installed: Version | None) -> Version | None:
    """The first fix an upgrade from `installed` reaches (None when there is none)."""
    candidates = [v for v in versions if installed is None or v > installed]
    return min(candidates, default=None)
