"""Each forge's signature check on the documented headers: signed passes; unsigned,
wrongly signed, tampered and stale deliveries are `Unverified`."""

from __future__ import annotations

import time

import pytest

from conveyor.forge.gitea import Gitea
from conveyor.forge.github import GitHub
from conveyor.forge.gitlab import GitLab
from conveyor.forge.model import Unverified
from conveyor.forge.signatures import sign_standard, standard_key
from forge.payloads import (
    SECRET,
    body_of,
    gitea_headers,
    github_headers,
    github_push,
    gitlab_headers,
    standard_headers,
)

BODY = body_of(github_push())
NOW = time.time()  # at collection: a test passes it where the time matters


def test_github_signature_of_the_raw_body_passes() -> None:
    GitHub().verify(github_headers(BODY), BODY, SECRET, NOW)


def test_github_example_from_its_documentation() -> None:
    # GitHub's "Validating webhook deliveries": this secret and body give this signature.
    headers = {
        "x-hub-signature-256": "sha256="
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    }
    GitHub().verify(headers, b"Hello, World!", SECRET, NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"x-hub-signature-256": None}, "unsigned"),
        ({"x-hub-signature-256": "sha256=" + "0" * 64}, "wrong signature"),
        ({"x-hub-signature-256": "sha1=abc"}, "wrong signature"),
    ],
)
def test_github_refuses_unsigned_and_wrong(change: dict[str, str | None], reason: str) -> None:
    headers = {**github_headers(BODY), **change}
    sent = {k: v for k, v in headers.items() if v is not None}
    with pytest.raises(Unverified, match=reason):
        GitHub().verify(sent, BODY, SECRET, NOW)


def test_github_refuses_a_tampered_body_and_another_secret() -> None:
    headers = github_headers(BODY)
    with pytest.raises(Unverified):
        GitHub().verify(headers, BODY.replace(b"main", b"evil"), SECRET, NOW)
    with pytest.raises(Unverified):
        GitHub().verify(headers, BODY, "another secret", NOW)


def test_gitlab_token_is_compared_whole() -> None:
    GitLab().verify(gitlab_headers(), BODY, SECRET, NOW)
    for wrong in ("", SECRET[:-1], SECRET + "x", SECRET.upper()):
        with pytest.raises(Unverified):
            GitLab().verify(gitlab_headers(secret=wrong), BODY, SECRET, NOW)
    with pytest.raises(Unverified, match="unsigned"):
        GitLab().verify({"x-gitlab-event": "Push Hook"}, BODY, SECRET, NOW)


@pytest.mark.parametrize("brand", ["gitea", "forgejo"])
def test_gitea_and_forgejo_hex_signatures(brand: str) -> None:
    Gitea(brand).verify(gitea_headers(BODY, brand=brand), BODY, SECRET, NOW)
    with pytest.raises(Unverified):
        Gitea(brand).verify(gitea_headers(BODY, secret="x", brand=brand), BODY, SECRET, NOW)
    with pytest.raises(Unverified, match="unsigned"):
        Gitea(brand).verify({f"x-{brand}-event": "push"}, BODY, SECRET, NOW)


def test_standard_webhooks_reference_vector() -> None:
    # The test vector of the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    signature = sign_standard("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, secret)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,wrong v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    GitLab().verify(headers, body, secret, 1614265330 + 10)


@pytest.mark.parametrize("forge", [GitHub(), GitLab(), Gitea()])
def test_standard_webhooks_signature_is_checked_where_sent(forge: object) -> None:
    secret = "whsec_" + "c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVz"
    assert standard_key(secret) == b"secret-key-of-thirty-two-bytes"
    verify = forge.verify  # type: ignore[attr-defined]
    verify(standard_headers(BODY, secret, at=NOW), BODY, secret, NOW)
    with pytest.raises(Unverified, match="more than 5 minutes"):
        verify(standard_headers(BODY, secret, at=NOW - 301), BODY, secret, NOW)
    with pytest.raises(Unverified, match="wrong webhook-signature"):
        verify(standard_headers(BODY, "whsec_b3RoZXI=", at=NOW), BODY, secret, NOW)
    # A valid native signature does not excuse a wrong Standard Webhooks one.
    native = github_headers(BODY, secret=secret) | gitlab_headers(secret=secret)
    native |= gitea_headers(BODY, secret=secret)
    wrong = standard_headers(BODY, "whsec_b3RoZXI=", at=NOW)
    with pytest.raises(Unverified):
        verify(native | wrong, BODY, secret, NOW)
