"""Logging in with OpenID Connect, end to end against a real OIDC provider
(oidc-provider-mock, a Flask app serving discovery, JWKS, authorize and token endpoints,
in a thread of this process), driven with httpx following redirects like a browser."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from conveyor.approvals.users import add_user
from conveyor.server.oidc import PendingLogin
from conveyor.store.records import EventKind
from server.conftest import ServerUnderTest

CLIENT_ID = "conveyor-test"


@pytest.fixture
def provider() -> Iterator[str]:
    """The provider's issuer URL. It requires a nonce, so a flow without one fails."""
    from authlib.deprecate import AuthlibDeprecationWarning  # type: ignore[import-untyped]

    with warnings.catch_warnings():
        # The mock itself still uses authlib.jose (deprecated for joserfc) and an old hook
        # of authlib's, in its thread too: the filters stay while it serves.
        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        warnings.filterwarnings("ignore", r"get_jwt_config\(", DeprecationWarning)
        from oidc_provider_mock import run_server_in_thread  # type: ignore[import-untyped]

        with run_server_in_thread(require_nonce=True) as server:
            yield f"http://localhost:{server.server_port}"


@pytest.fixture
def oidc_server(served: ServerUnderTest, provider: str) -> ServerUnderTest:
    settings = served.context.project.state_dir / "oidc.yml"
    settings.write_text(f"issuer: {provider}\nclient_id: {CLIENT_ID}\nclient_secret: s3cret\n")
    settings.chmod(0o600)
    add_user(served.context.users_file, "alice", "alice@example.org", ["developer"], [])
    return served


def sign_in_at_provider(browser: httpx.Client, subject: str, next_path: str) -> httpx.Response:
    """Start at Conveyor, follow it to the provider's form, and sign in there as
    `subject` (the mock's user, whose `email` claim is the subject)."""
    form = browser.get("/login/oidc", params={"next": next_path})
    assert form.status_code == 200 and "sub" in form.text, form.text
    authorize_url = form.url
    assert authorize_url.params["code_challenge_method"] == "S256"
    assert authorize_url.params["nonce"] and authorize_url.params["state"]
    return browser.post(str(authorize_url), data={"sub": subject})


def auth_denials(served: ServerUnderTest) -> list[Any]:
    return [e for e in served.context.store.events() if e.kind == EventKind.AUTH_DENIED.value]


def test_a_known_user_logs_in_with_openid_connect(oidc_server: ServerUnderTest) -> None:
    with httpx.Client(base_url=oidc_server.url, follow_redirects=True, timeout=10.0) as browser:
        login_page = browser.get("/login")
        assert "Log in with OpenID Connect" in login_page.text
        landed = sign_in_at_provider(browser, "alice@example.org", "/api/v1/whoami")
        assert landed.url.path == "/api/v1/whoami", landed.text
        assert landed.json() == {"name": "alice", "roles": ["developer"], "via": "session"}
        assert "conveyor_oidc" not in browser.cookies  # the pending login is gone
    assert auth_denials(oidc_server) == []


def test_an_unknown_identity_is_refused_and_recorded(oidc_server: ServerUnderTest) -> None:
    with httpx.Client(base_url=oidc_server.url, follow_redirects=True, timeout=10.0) as browser:
        refused = sign_in_at_provider(browser, "mallory@example.org", "/")
        assert refused.status_code == 403
        assert "mallory@example.org is not a user of this server" in refused.text
        assert "conveyor_session" not in browser.cookies
    (denied,) = auth_denials(oidc_server)
    assert denied.actor == "mallory@example.org" and denied.data["credential"] == "oidc"


def test_a_callback_this_browser_did_not_start_is_refused(oidc_server: ServerUnderTest) -> None:
    # Someone else's code and state, pasted into a fresh browser (login CSRF).
    with httpx.Client(base_url=oidc_server.url, timeout=10.0) as browser:
        answer = browser.get("/login/oidc/callback", params={"code": "x", "state": "y"})
        assert answer.status_code == 403 and "no login was started here" in answer.text
        assert "conveyor_session" not in answer.cookies
    assert auth_denials(oidc_server)[0].data["reason"] == "no login was started here"


def test_a_state_that_does_not_match_is_refused(oidc_server: ServerUnderTest) -> None:
    with httpx.Client(base_url=oidc_server.url, timeout=10.0) as browser:
        started = browser.get("/login/oidc")
        assert started.status_code == 303
        code_request = httpx.URL(started.headers["location"])
        assert code_request.params["client_id"] == CLIENT_ID
        answer = browser.get("/login/oidc/callback", params={"code": "x", "state": "forged"})
        assert answer.status_code == 403 and "the state does not match" in answer.text


def test_an_id_token_for_another_nonce_is_refused(oidc_server: ServerUnderTest) -> None:
    """The ID token's signature, issuer, audience and nonce are checked: here the browser's
    pending login expects another nonce than the one the provider put in the token."""
    with httpx.Client(base_url=oidc_server.url, timeout=10.0) as browser:
        started = browser.get("/login/oidc")
        pending = PendingLogin.decode(started.cookies["conveyor_oidc"])
        assert pending is not None
        other = replace(pending, nonce="another-nonce").encode()
        browser.cookies.set("conveyor_oidc", other, domain="127.0.0.1", path="/login/oidc")
        at_provider = browser.post(started.headers["location"], data={"sub": "alice@example.org"})
        callback = at_provider.headers["location"]
        answer = browser.get(callback)
        assert answer.status_code == 403
        assert "the ID token is not valid" in answer.text and "nonce" in answer.text
        assert "conveyor_session" not in browser.cookies


def test_a_provider_that_is_down_or_a_bad_setting_leaves_token_logins(
    served: ServerUnderTest,
) -> None:
    settings = served.context.project.state_dir / "oidc.yml"
    settings.write_text("issuer: http://127.0.0.1:9\nclient_id: c\nclient_secret: s\n")
    settings.chmod(0o600)
    down = served.client.get("/login/oidc")
    assert down.status_code == 502 and "The provider is unavailable" in down.text
    settings.chmod(0o644)  # its secret readable by others: refused, the page still works
    page = served.client.get("/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "others may read it" in page.text and "OpenID Connect</a>" not in page.text
