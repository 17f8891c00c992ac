from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from conveyor.errors import ConveyorError
from conveyor.supply.keys import TrustedKeys, generate_keypair, load_private, load_public


def test_generated_private_key_is_owner_only_and_loads_back(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "keys", "release")

    assert pair.private_path == tmp_path / "keys" / "release.key"
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert b"BEGIN PRIVATE KEY" in pair.private_path.read_bytes()
    assert b"BEGIN PUBLIC KEY" in pair.public_path.read_bytes()
    private, public = load_private(pair.private_path), load_public(pair.public_path)
    assert private.key_id == public.key_id == pair.key_id
    assert public.verifies(private.sign(b"data"), b"data")
    assert not public.verifies(private.sign(b"data"), b"other data")


def test_key_id_is_the_full_sha256_of_the_raw_public_key(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path, "release")
    raw = load_public(pair.public_path).key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert pair.key_id == hashlib.sha256(raw).hexdigest()
    assert load_public(pair.public_path).short_id == pair.key_id[:16]


def test_generating_over_an_existing_key_is_refused(tmp_path: Path) -> None:
    generate_keypair(tmp_path, "release")
    with pytest.raises(ConveyorError, match="already exists"):
        generate_keypair(tmp_path, "release")


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path, "release")
    pair.private_path.chmod(0o644)
    with pytest.raises(ConveyorError, match="readable by other users") as caught:
        load_private(pair.private_path)
    assert caught.value.hint == f"chmod 600 {pair.private_path}"


def test_non_ed25519_and_garbage_keys_are_refused(tmp_path: Path) -> None:
    ec_public = tmp_path / "ec.pub"
    ec_public.write_bytes(
        generate_private_key(SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ConveyorError, match="not an ed25519 key"):
        load_public(ec_public)
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("hello")
    with pytest.raises(ConveyorError, match="not a PEM public key"):
        load_public(garbage)
    with pytest.raises(ConveyorError, match="does not exist"):
        load_public(tmp_path / "missing.pub")


def test_trusted_keys_load_from_directories_and_files(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path / "pinned", "first")
    second = generate_keypair(tmp_path / "pinned", "second")
    loose = generate_keypair(tmp_path / "elsewhere", "loose")

    trusted = TrustedKeys.from_paths([tmp_path / "pinned", loose.public_path])

    assert len(trusted) == 3
    assert {first.key_id, second.key_id, loose.key_id} == {key.key_id for key in trusted}
    assert first.key_id in trusted
    assert "0" * 64 not in trusted
    assert trusted.get(second.key_id) is not None
