"""Signature checks shared by the forges: HMAC-SHA256 of the raw body, a shared token,
and the Standard Webhooks scheme (https://www.standardwebhooks.com/), which also signs an
id and a timestamp. Every comparison is constant-time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from conveyor.forge.model import Headers, Unverified

STANDARD_ID = "webhook-id"
STANDARD_TIMESTAMP = "webhook-timestamp"
STANDARD_SIGNATURE = "webhook-signature"
STANDARD_TOLERANCE = 300.0  # seconds either side of now, as the specification advises
STANDARD_SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix)


def hmac_sha256(secret: bytes, message: bytes) -> bytes:
    return hmac.new(secret, message, hashlib.sha256).digest()


def check_hex_hmac(signature: str, body: bytes, secret: str, prefix: str = "") -> None:
    """`signature` must be `prefix` + the hex HMAC-SHA256 of the body."""
    expected = prefix + hmac_sha256(secret.encode(), body).hex()
    if not hmac.compare_digest(signature.strip().encode(), expected.encode()):
        raise Unverified("wrong signature")


def check_token(sent: str, secret: str) -> None:
    if not hmac.compare_digest(sent.encode(), secret.encode()):
        raise Unverified("wrong token")


def has_standard_signature(headers: Headers) -> bool:
    return STANDARD_SIGNATURE in headers


def check_standard(headers: Headers, body: bytes, secret: str, now: float) -> None:
    """A Standard Webhooks delivery: one of the space-separated `v1,<base64>` entries of
    webhook-signature must be the HMAC-SHA256 of `id.timestamp.body`, and the timestamp
    within five minutes of now (the scheme's own replay protection)."""
    message_id = headers.get(STANDARD_ID)
    stamp = headers.get(STANDARD_TIMESTAMP, "")
    if not message_id or not stamp.isdigit():
        raise Unverified("webhook-signature without webhook-id and webhook-timestamp")
    if abs(now - int(stamp)) > STANDARD_TOLERANCE:
        raise Unverified("webhook-timestamp is more than 5 minutes from now")
    signed = f"{message_id}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac_sha256(standard_key(secret), signed))
    for entry in headers[STANDARD_SIGNATURE].split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise Unverified("wrong webhook-signature")


def standard_key(secret: str) -> bytes:
    """A `whsec_` secret is base64 after its prefix; any other is used as its bytes."""
    if secret.startswith(STANDARD_SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(STANDARD_SECRET_PREFIX), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def sign_standard(message_id: str, timestamp: int, body: bytes, secret: str) -> str:
    """The webhook-signature header value for a delivery (tests and the benchmark send it)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac_sha256(standard_key(secret), signed)).decode()
