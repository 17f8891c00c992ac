"""Everything that passes through the broker or the artifact store is sealed with the key
the run's side and the workers share (Fernet: AES-128-CBC with an HMAC-SHA256), so the
job's environment (its secrets), its log and its files are never there in clear, and a
message not sealed with the key is refused."""

from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from conveyor.errors import ConveyorError


class SealError(ConveyorError):
    """A message or artifact not sealed with our key (or altered on the way)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except ValueError:
            raise ConveyorError(
                "the worker key is not a Fernet key (32 url-safe base64-encoded bytes)",
                hint="`conveyor worker --new-key FILE` writes one",
            ) from None

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def open(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise SealError("refused a message not sealed with the worker key") from None

    def seal_json(self, value: Any) -> str:
        return self.seal(json.dumps(value, separators=(",", ":")).encode()).decode()

    def open_json(self, token: str | bytes) -> Any:
        raw = token.encode() if isinstance(token, str) else token
        return json.loads(self.open(raw))


def new_key() -> bytes:
    return Fernet.generate_key()
