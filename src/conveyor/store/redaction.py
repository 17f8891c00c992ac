"""Secrets masked at the storage boundary: what the store writes never holds one in clear.

The store is told the secrets it must hide (a run's job secrets, an environment's
secrets) as a `Redactor` (engine/mask.py's Masker: the store knows nothing above it). The
`Redaction` rides on the store's engine as an execution option, so every function that
writes through a connection (events, job details, report summaries, deploy reasons) finds
it without it being passed down by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, Self

import sqlalchemy as sa

OPTION = "conveyor_redaction"
# Digests and commit ids in event data: masked only if a secret is in them whole, never
# for a chance match of a secret's encoding or first characters (hex-looking secrets).
_IDENTIFIER = re.compile(r"(?:sha256:)?[0-9a-f]{7,64}")

# Outputs that are text reports, stored masked (JUnit XML, tests.json, SARIF, logs);
# other outputs (archives, binaries, images) are kept byte for byte.
TEXT_REPORT_SUFFIXES = frozenset({".xml", ".json", ".sarif", ".txt", ".log"})


class Redactor(Protocol):
    @property
    def secrets(self) -> tuple[str, ...]: ...

    def including(self, secrets: Iterable[str]) -> Self: ...

    def mask_text(self, text: str) -> str: ...

    def mask_bytes(self, data: bytes) -> bytes: ...


class Redaction:
    """The secrets one store masks; starts with none."""

    def __init__(self) -> None:
        self._redactor: Redactor | None = None

    def add(self, redactor: Redactor) -> None:
        """Mask these secrets too, from now on."""
        if not redactor.secrets:
            return
        current = self._redactor
        self._redactor = redactor if current is None else current.including(redactor.secrets)

    @property
    def active(self) -> bool:
        return self._redactor is not None

    def text(self, text: str) -> str:
        return text if self._redactor is None else self._redactor.mask_text(text)

    def data(self, data: bytes) -> bytes:
        """A report's bytes masked. A JSON document is masked string by string, so a
        string cut short after a secret's first characters is caught too."""
        if self._redactor is None:
            return data
        try:
            document = json.loads(data)
        except ValueError:  # not JSON (UnicodeDecodeError is a ValueError too)
            return self._redactor.mask_bytes(data)
        masked = self.value(document)
        return data if masked == document else json.dumps(masked).encode()

    def value(self, value: Any) -> Any:
        """Every string inside `value` (a JSON-like tree) masked; keys are names, kept."""
        if self._redactor is None:
            return value
        if isinstance(value, str):
            if _IDENTIFIER.fullmatch(value) and not self._holds_a_secret(value):
                return value  # a digest or commit: a chance match must not break it
            return self._redactor.mask_text(value)
        if isinstance(value, Mapping):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        return value

    def _holds_a_secret(self, text: str) -> bool:
        assert self._redactor is not None
        return any(secret in text for secret in self._redactor.secrets)

    def output(self, path: Path) -> bytes | None:
        """A text report output's masked bytes, or None to store the file as it is."""
        if self._redactor is None or path.suffix.lower() not in TEXT_REPORT_SUFFIXES:
            return None
        return self.data(path.read_bytes())


_NONE = Redaction()


def of(conn: sa.Connection) -> Redaction:
    """The redaction of the store this connection belongs to (none for a bare engine)."""
    found = conn.get_execution_options().get(OPTION)
    return found if isinstance(found, Redaction) else _NONE


def fields(conn: sa.Connection, values: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """`values` with the free-text columns among `names` masked."""
    redaction = of(conn)
    if not redaction.active:
        return values
    masked = dict(values)
    for name in names:
        if name in masked and masked[name] is not None:
            masked[name] = redaction.value(masked[name])
    return masked
