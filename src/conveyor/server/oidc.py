"""Login with OpenID Connect: the authorization code flow with PKCE, `state` and `nonce`
(authlib builds the request and the code challenge; joserfc, authlib's JOSE library,
checks the ID token's signature and claims).

Settings come from the environment or from `<state>/oidc.yml` (never the repository):

    CONVEYOR_OIDC_ISSUER, CONVEYOR_OIDC_CLIENT_ID, CONVEYOR_OIDC_CLIENT_SECRET
    # or <state>/oidc.yml, readable by its owner only:
    issuer: https://login.example.org
    client_id: conveyor
    client_secret: ...

The ID token's `email` (unless `email_verified` is false), else its `preferred_username`,
must name a user of the users file; anyone else is refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from authlib.common.security import generate_token  # type: ignore[import-untyped]
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri  # type: ignore[import-untyped]
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from conveyor.approvals.users import User, UsersFile
from conveyor.errors import ConveyorError

OIDC_FILENAME = "oidc.yml"
ENV_PREFIX = "CONVEYOR_OIDC_"
FLOW_COOKIE = "conveyor_oidc"  # the pending login's state, nonce and code verifier
FLOW_LIFETIME = 600  # seconds to finish logging in at the provider
CALLBACK_PATH = "/login/oidc/callback"
SCOPE = "openid email profile"


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret: str


def load_settings(state_dir: Path) -> OidcSettings | None:
    """The provider, if one is configured (environment first, then the state folder)."""
    values = {
        key: os.environ.get(ENV_PREFIX + key.upper(), "")
        for key in ("issuer", "client_id", "client_secret")
    }
    path = state_dir / OIDC_FILENAME
    if not values["issuer"] and path.is_file():
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConveyorError(
                f"{path} holds a client secret but others may read it", hint=f"chmod 600 {path}"
            )
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConveyorError(f"{path}: expected issuer, client_id and client_secret")
        values = {key: str(loaded.get(key, "")) for key in values}
    if not values["issuer"]:
        return None
    missing = [key for key, value in values.items() if not value]
    if missing:
        raise ConveyorError(f"OpenID Connect is configured without {', '.join(missing)}")
    return OidcSettings(values["issuer"].rstrip("/"), values["client_id"], values["client_secret"])


@dataclass(frozen=True)
class Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


async def discover(settings: OidcSettings) -> Provider:
    url = settings.issuer + "/.well-known/openid-configuration"
    async with httpx.AsyncClient(timeout=10.0) as client:
        document = (await client.get(url)).raise_for_status().json()
    if str(document.get("issuer", "")).rstrip("/") != settings.issuer:
        raise ConveyorError(f"the provider at {url} names another issuer: {document.get('issuer')}")
    return Provider(
        document["authorization_endpoint"], document["token_endpoint"], document["jwks_uri"]
    )


@dataclass(frozen=True)
class PendingLogin:
    """What the browser keeps (an HttpOnly cookie) between leaving for the provider and
    coming back: only this browser can finish the login it started."""

    state: str
    nonce: str
    verifier: str
    next: str

    def encode(self) -> str:
        return base64.urlsafe_b64encode(json.dumps(self.__dict__).encode()).decode()

    @classmethod
    def decode(cls, value: str) -> PendingLogin | None:
        try:
            data = json.loads(base64.urlsafe_b64decode(value.encode()))
            return cls(
                str(data["state"]), str(data["nonce"]), str(data["verifier"]), str(data["next"])
            )
        except (ValueError, KeyError, TypeError):
            return None


def authorization_url(
    settings: OidcSettings, provider: Provider, redirect_uri: str, next_path: str
) -> tuple[str, PendingLogin]:
    pending = PendingLogin(generate_token(32), generate_token(32), generate_token(64), next_path)
    url = prepare_grant_uri(
        provider.authorization_endpoint,
        settings.client_id,
        "code",
        redirect_uri=redirect_uri,
        scope=SCOPE,
        state=pending.state,
        nonce=pending.nonce,
        code_challenge=create_s256_code_challenge(pending.verifier),
        code_challenge_method="S256",
    )
    return url, pending


async def exchange(
    settings: OidcSettings, provider: Provider, code: str, redirect_uri: str, pending: PendingLogin
) -> dict[str, Any]:
    """The ID token's claims for this code, checked: signature, issuer, audience, expiry
    and our nonce."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        answer = await client.post(
            provider.token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": pending.verifier,
            },
            auth=(settings.client_id, settings.client_secret),
        )
        if answer.status_code != 200:
            raise ConveyorError(f"the provider refused the code ({answer.status_code})")
        id_token = answer.json().get("id_token")
        keys = (await client.get(provider.jwks_uri)).raise_for_status().json()
    if not isinstance(id_token, str):
        raise ConveyorError("the provider sent no ID token")
    try:
        token = jwt.decode(id_token, KeySet.import_key_set(keys))
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "value": settings.client_id},
            nonce={"essential": True, "value": pending.nonce},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(token.claims)
    except (JoseError, ValueError) as error:
        raise ConveyorError(f"the ID token is not valid: {error}") from None
    return dict(token.claims)


def identity_of(claims: dict[str, Any]) -> str:
    """How the ID token names its holder (for messages and the record)."""
    return str(claims.get("email") or claims.get("preferred_username") or claims.get("sub"))


def user_for(users: UsersFile, claims: dict[str, Any]) -> User | None:
    email = claims.get("email")
    if isinstance(email, str) and claims.get("email_verified") is not False:
        found = next((u for u in users.users if u.email.casefold() == email.casefold()), None)
        if found is not None:
            return found
    username = claims.get("preferred_username")
    return users.find(username) if isinstance(username, str) else None
