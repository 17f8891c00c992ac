"""Ed25519 signing keys: generate, load, and the set of pinned public keys to trust.

A key id is the full SHA-256 hex digest of the raw 32-byte public key, so the same key
has the same id wherever its PEM file lives. Private keys are PKCS#8 PEM files written
with mode 0600; like ssh, loading refuses a private key other users can read.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conveyor.errors import ConveyorError

PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
_PRIVATE_MODE = 0o600


def key_id_of(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    key: Ed25519PublicKey
    source: Path | None = None

    @property
    def short_id(self) -> str:
        return self.key_id[:16]

    def verifies(self, signature: bytes, data: bytes) -> bool:
        try:
            self.key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    key: Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key_id, self.key.public_key())


@dataclass(frozen=True)
class KeyPair:
    key_id: str
    private_path: Path
    public_path: Path


def generate_keypair(directory: Path, name: str) -> KeyPair:
    """Write `<name>.key` (0600) and `<name>.pub` into `directory`; never overwrites."""
    if not name or "/" in name or name.startswith("."):
        raise ConveyorError(f"invalid key name {name!r}", hint="use a plain name such as 'release'")
    directory.mkdir(parents=True, exist_ok=True)
    private_path = directory / f"{name}{PRIVATE_SUFFIX}"
    public_path = directory / f"{name}{PUBLIC_SUFFIX}"
    for path in (private_path, public_path):
        if path.exists():
            raise ConveyorError(
                f"{path} already exists", hint="choose another name or remove the old key first"
            )
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_new(private_path, private_pem, _PRIVATE_MODE)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_new(public_path, public_pem, 0o644)
    return KeyPair(key_id_of(private.public_key()), private_path, public_path)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL with the final mode: the secret is never readable by others, not even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask may have narrowed the mode given to open()


def load_private(path: Path) -> SigningKey:
    data = _read_key_file(path, "private")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConveyorError(
            f"private key {path} is readable by other users (mode {mode:04o})",
            hint=f"chmod 600 {path}",
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise ConveyorError(
            f"{path} is not an unencrypted PEM private key: {error}",
            hint="generate one with `conveyor keys generate`",
        ) from error
    if not isinstance(key, Ed25519PrivateKey):
        raise ConveyorError(f"{path} is not an ed25519 key", hint="conveyor signs with ed25519")
    return SigningKey(key_id_of(key.public_key()), key)


def load_public(path: Path) -> PublicKey:
    data = _read_key_file(path, "public")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise ConveyorError(
            f"{path} is not a PEM public key: {error}", hint="pin the .pub file of a conveyor key"
        ) from error
    if not isinstance(key, Ed25519PublicKey):
        raise ConveyorError(f"{path} is not an ed25519 key", hint="conveyor signs with ed25519")
    return PublicKey(key_id_of(key), key, path)


def _read_key_file(path: Path, kind: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise ConveyorError(f"{kind} key {path} does not exist") from error
    except IsADirectoryError as error:
        raise ConveyorError(f"{kind} key {path} is a directory, not a key file") from error


class TrustedKeys:
    """The pinned public keys, by key id: the only keys whose signatures are accepted."""

    def __init__(self, keys: Iterable[PublicKey] = ()) -> None:
        self._keys = {key.key_id: key for key in keys}

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> TrustedKeys:
        """Public key files, or directories whose `*.pub` files are all pinned."""
        keys: list[PublicKey] = []
        for path in paths:
            if path.is_dir():
                keys.extend(load_public(item) for item in sorted(path.glob(f"*{PUBLIC_SUFFIX}")))
            else:
                keys.append(load_public(path))
        return cls(keys)

    def get(self, key_id: str) -> PublicKey | None:
        return self._keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[PublicKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)
