"""Logging in and who may do what: tokens, sessions and their CSRF tokens, the first
admin's login link, the policy file's rules, public projects, and every denial recorded."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, Request

from conveyor.approvals.users import revoke_token, verify_secret
from conveyor.server import app as server_app
from conveyor.server.auth import Action, Principal, authorize, csrf_token, require
from conveyor.server.login import first_admin_link, safe_next
from conveyor.store.records import EventKind
from server.conftest import MakeServer, ServerUnderTest

# --- a test-only router with endpoints that write ------------------------------------

WRITES: list[str] = []
extra_router = APIRouter()


@extra_router.get("/test/csrf")
def the_csrf_token(
    request: Request, _p: Annotated[Principal, Depends(require("project", Action.READ))]
) -> dict[str, str]:
    return {"csrf": csrf_token(request)}


@extra_router.post("/test/runs")
def start_run(
    principal: Annotated[Principal, Depends(require("runs", Action.CREATE))],
) -> dict[str, str]:
    WRITES.append(f"run by {principal.name}")
    return {"by": principal.name}


@extra_router.post("/test/deploy/{environment}")
def deploy(
    request: Request,
    environment: str,
    _p: Annotated[Principal, Depends(require("environments", Action.UPDATE))],
) -> dict[str, str]:
    principal = authorize(request, "environments", Action.UPDATE, environment)
    WRITES.append(f"deploy {environment} by {principal.name}")
    return {"deployed": environment}


@extra_router.post("/test/flags/{environment}")
def set_flag(
    environment: str,
    principal: Annotated[
        Principal, Depends(require("flags", Action.UPDATE, object_from="environment"))
    ],
) -> dict[str, str]:
    WRITES.append(f"flag in {environment} by {principal.name}")
    return {"set": environment}


@pytest.fixture
def served(make_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerUnderTest]:
    """The server with the test router above."""
    routers = (*server_app.ROUTERS, f"{__name__}:extra_router")
    monkeypatch.setattr(server_app, "ROUTERS", routers)
    WRITES.clear()
    yield make_server()
    WRITES.clear()


def denials(served: ServerUnderTest) -> list[Any]:
    return [e for e in served.context.store.events() if e.kind == EventKind.AUTH_DENIED.value]


def write_policy(served: ServerUnderTest, text: str) -> None:
    path = served.context.project.state_dir / "policy.csv"
    path.write_text(text)
    path.chmod(0o600)


@contextmanager
def log_in(served: ServerUnderTest, user: str, next_path: str = "/") -> Iterator[httpx.Client]:
    """A browser-like client logged in through the login form with `user`'s token."""
    with httpx.Client(base_url=served.url, timeout=10.0) as browser:
        yield _logged_in(served, browser, user, next_path)


def _logged_in(
    served: ServerUnderTest, browser: httpx.Client, user: str, next_path: str
) -> httpx.Client:
    page = browser.get("/login", params={"next": next_path})
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)
    assert nonce, page.text
    answer = browser.post(
        "/login",
        data={"token": served.tokens[user], "login_nonce": nonce.group(1), "next": next_path},
    )
    assert answer.status_code == 303, answer.text
    return browser


# --- 401: no login ---------------------------------------------------------------------


def test_no_or_a_bad_token_is_401_and_changes_nothing(served: ServerUnderTest) -> None:
    assert served.client.post("/test/runs").status_code == 401
    bad_secret = served.tokens["developer"][:-4] + "xxxx"
    answer = served.client.post("/test/runs", headers={"Authorization": f"Bearer {bad_secret}"})
    assert answer.status_code == 401
    assert answer.json()["reason"].endswith("the secret is wrong")
    assert WRITES == []
    assert [e.kind for e in served.context.store.events()] == [EventKind.AUTH_DENIED.value] * 2
    recorded = [e for e in denials(served) if not e.data.get("aggregated")]
    assert len(recorded) == 1  # the bad token; the anonymous one is aggregated
    bad = recorded[0]
    assert bad.actor == "developer" and bad.data["status"] == 401
    assert bad.data["credential"] == "token" and bad.data["path"] == "/test/runs"
    assert bad_secret.rsplit("_", 1)[1] not in str(bad.data)  # never the secret


def test_anonymous_401s_are_aggregated_not_recorded_one_by_one(served: ServerUnderTest) -> None:
    for _ in range(25):
        assert served.client.get("/api/v1/whoami").status_code == 401
    anonymous = denials(served)
    assert len(anonymous) == 1  # the first; the next summary waits a minute
    assert anonymous[0].data["aggregated"] is True and anonymous[0].data["count"] == 1


def test_a_browser_without_a_login_is_sent_to_the_login_page(served: ServerUnderTest) -> None:
    page = served.client.get("/", params={"tab": "x"}, headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Ftab%3Dx"
    api = served.client.get("/api/v1/whoami", headers={"Accept": "text/html"})
    assert api.status_code == 401  # the API answers, never redirects


# --- 403: no right ---------------------------------------------------------------------


def test_a_role_without_the_action_is_403_and_the_denial_recorded(served: ServerUnderTest) -> None:
    answer = served.client.post("/test/runs", headers=served.as_user("viewer"))
    assert answer.status_code == 403
    assert answer.json()["reason"] == "viewer may not create runs"
    assert WRITES == []
    (denied,) = denials(served)
    assert denied.actor == "viewer"
    assert denied.data["status"] == 403 and denied.data["resource"] == "runs"
    assert denied.data["action"] == "create" and denied.data["credential"] == "token"
    assert "token_id" in denied.data


def test_a_bearer_post_needs_no_csrf_token(served: ServerUnderTest) -> None:
    answer = served.client.post("/test/runs", headers=served.as_user("developer"))
    assert answer.status_code == 200
    assert WRITES == ["run by developer"]


# --- sessions --------------------------------------------------------------------------


def test_logging_in_with_a_token_sets_an_http_only_same_site_cookie(
    served: ServerUnderTest,
) -> None:
    with httpx.Client(base_url=served.url) as browser:
        page = browser.get("/login")
        assert page.status_code == 200 and 'name="token"' in page.text
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)
        assert nonce
        answer = browser.post(
            "/login",
            data={"token": served.tokens["developer"], "login_nonce": nonce.group(1)},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = next(
            c for c in answer.headers.get_list("set-cookie") if c.startswith("conveyor_session=")
        )
        attributes = {a.strip().lower() for a in cookie.split(";")}
        assert "httponly" in attributes and "samesite=lax" in attributes
        assert "path=/" in attributes
        assert "secure" not in attributes  # http://127.0.0.1: a Secure cookie would not come back
        me = browser.get("/api/v1/whoami").json()
        assert me == {"name": "developer", "roles": ["developer"], "via": "session"}
        secret = answer.cookies["conveyor_session"]
    assert secret not in str(served.context.store.engine.url)
    with served.context.store.engine.connect() as conn:
        stored = conn.exec_driver_sql("select id_hash from sessions").scalars().all()
    assert stored and secret not in stored  # only its hash is kept


def test_the_login_form_refuses_a_post_from_another_site(served: ServerUnderTest) -> None:
    # No cookie from our login page: the form was not ours (login CSRF).
    answer = served.client.post(
        "/login", data={"token": served.tokens["admin"], "login_nonce": "forged"}
    )
    assert answer.status_code == 403
    assert "conveyor_session" not in answer.cookies
    assert denials(served)[-1].data["reason"] == "the login form came from elsewhere"


def test_a_wrong_token_on_the_login_page_is_refused_and_recorded(served: ServerUnderTest) -> None:
    with httpx.Client(base_url=served.url) as browser:
        page = browser.get("/login")
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)
        assert nonce
        answer = browser.post(
            "/login", data={"token": "cvy_0123456789ab_x", "login_nonce": nonce[1]}
        )
        assert answer.status_code == 401 and "token 0123456789ab is unknown" in answer.text
        assert "conveyor_session" not in answer.cookies
    assert denials(served)[-1].data["token_id"] == "0123456789ab"


def test_a_session_post_needs_the_csrf_token(served: ServerUnderTest) -> None:
    with log_in(served, "developer") as browser:
        refused = browser.post("/test/runs")
        assert refused.status_code == 403
        assert refused.json()["reason"].startswith("the CSRF token is missing")
        wrong = browser.post("/test/runs", headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        assert WRITES == []
        reasons = [d.data["reason"] for d in denials(served)]
        assert reasons == ["the CSRF token is missing", "the CSRF token is wrong"]

        token = browser.get("/test/csrf").json()["csrf"]
        assert token
        assert browser.post("/test/runs", headers={"X-CSRF-Token": token}).status_code == 200
        assert browser.post("/test/runs", data={"csrf_token": token}).status_code == 200
        assert WRITES == ["run by developer", "run by developer"]


def test_the_csrf_token_is_empty_for_bearer_callers(served: ServerUnderTest) -> None:
    answer = served.client.get("/test/csrf", headers=served.as_user("viewer"))
    assert answer.json() == {"csrf": ""}


def test_logging_out_ends_the_session(served: ServerUnderTest) -> None:
    with log_in(served, "viewer") as browser:
        cookie = browser.cookies["conveyor_session"]
        home = browser.get("/", headers={"Accept": "text/html"}).text
        form = re.search(
            r'action="/logout"><input type="hidden" name="csrf_token" value="([^"]+)"', home
        )
        assert form, home  # every page has the logout form, with the session's CSRF token
        token = form[1]
        assert browser.post("/logout").status_code == 403  # logging out is a form too
        out = browser.post("/logout", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/login"
    stale = httpx.get(f"{served.url}/api/v1/whoami", cookies={"conveyor_session": cookie})
    assert stale.status_code == 401  # a copied cookie is no use after


@pytest.mark.parametrize(
    ("asked", "sent_to"),
    [
        ("/runs?branch=main", "/runs?branch=main"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
    ],
)
def test_next_is_always_a_local_path(asked: str, sent_to: str) -> None:
    assert safe_next(asked) == sent_to


def test_the_login_form_never_redirects_off_site(served: ServerUnderTest) -> None:
    with httpx.Client(base_url=served.url) as browser:
        page = browser.get("/login", params={"next": "//evil.example/"})
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)
        assert nonce and 'name="next" value="/"' in page.text
        answer = browser.post(
            "/login",
            data={
                "token": served.tokens["viewer"],
                "login_nonce": nonce[1],
                "next": "https://evil.example/",
            },
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/"


# --- the first admin's login link ------------------------------------------------------


def test_a_login_link_works_once(served: ServerUnderTest) -> None:
    user, link = first_admin_link(served.context)
    assert user == "admin" and link.startswith(f"{served.url}/login/link/")
    with httpx.Client() as browser:
        first = browser.get(link)
        assert first.status_code == 303 and first.headers["location"] == "/"
        me = browser.get(f"{served.url}/api/v1/whoami").json()
        assert me["name"] == "admin" and me["via"] == "session"
    again = httpx.get(link)
    assert again.status_code == 410 and "used already" in again.text
    assert "conveyor_session" not in again.cookies
    (denied,) = denials(served)
    assert denied.data["credential"] == "login-link" and denied.data["path"] == "/login/link/…"
    assert link.rsplit("/", 1)[1] not in str(denied.data)


def test_the_first_admin_is_made_when_the_users_file_has_none(
    served: ServerUnderTest, tmp_path: Path
) -> None:
    served.context.users_file = tmp_path / "state" / "users.yml"
    user, link = first_admin_link(served.context, "root")
    assert user == "root"
    with httpx.Client() as browser:
        assert browser.get(link).status_code == 303
        me = browser.get(f"{served.url}/api/v1/whoami").json()
    assert me == {"name": "root", "roles": ["admin"], "via": "session"}
    # Once there is one, no other is made.
    assert first_admin_link(served.context)[0] == "root"


# --- the policy file -------------------------------------------------------------------


def test_a_developer_may_deploy_staging_but_not_production(served: ServerUnderTest) -> None:
    write_policy(
        served,
        "# developers ship to staging; production goes through reviewers\n"
        "p, role:developer, environments, update, production, deny\n",
    )
    developer = served.as_user("developer")
    assert served.client.post("/test/deploy/staging", headers=developer).status_code == 200
    refused = served.client.post("/test/deploy/production", headers=developer)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "developer may not update environments production"
    assert WRITES == ["deploy staging by developer"]
    (denied,) = denials(served)
    assert denied.data["object"] == "production" and denied.data["resource"] == "environments"
    # The object may come from a path parameter too.
    write_policy(served, "p, role:developer, flags, update, prod*, deny\n")
    assert served.client.post("/test/flags/staging", headers=developer).status_code == 200
    assert served.client.post("/test/flags/production", headers=developer).status_code == 403


def test_a_rule_and_a_grant_give_a_user_a_right_on_one_object(served: ServerUnderTest) -> None:
    write_policy(
        served,
        "p, role:stager, environments, update, staging, allow\ng, reviewer, role:stager\n",
    )
    reviewer = served.as_user("reviewer")
    assert served.client.post("/test/deploy/staging", headers=reviewer).status_code == 200
    assert served.client.post("/test/deploy/production", headers=reviewer).status_code == 403
    assert served.client.post("/test/runs", headers=reviewer).status_code == 403
    assert WRITES == ["deploy staging by reviewer"]


def test_a_bad_policy_line_is_a_located_error(served: ServerUnderTest) -> None:
    write_policy(served, "p, role:developer, environments, launch, production, deny\n")
    answer = served.client.get("/api/v1/whoami", headers=served.as_user("viewer"))
    assert answer.status_code == 200  # whoami checks no right
    refused = served.client.post("/test/runs", headers=served.as_user("developer"))
    assert refused.status_code == 400
    assert "policy.csv:1: unknown action 'launch'" in refused.json()["reason"]


# --- public projects -------------------------------------------------------------------


def test_a_public_project_is_readable_without_a_login_but_never_writable(
    served: ServerUnderTest,
) -> None:
    assert served.client.get("/").status_code == 401
    write_policy(served, "g, anonymous, role:viewer\n")
    page = served.client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert served.client.get("/api/v1/whoami").json()["via"] == "anonymous"
    assert served.client.post("/test/runs").status_code == 401
    # Even a policy granting anonymous more only ever lets it read.
    write_policy(served, "g, anonymous, role:admin\n")
    assert served.client.post("/test/runs").status_code == 401
    assert WRITES == []


def test_the_session_cookie_is_secure_behind_https(served: ServerUnderTest) -> None:
    served.context.public_url = "https://ci.example.org"
    page = served.client.get("/login")
    nonce = re.search(r'name="login_nonce" value="([^"]+)"', page.text)
    assert nonce and "secure" in page.headers["set-cookie"].lower()
    answer = served.client.post(
        "/login",
        data={"token": served.tokens["viewer"], "login_nonce": nonce[1]},
        headers={"Cookie": f"conveyor_login={nonce[1]}"},  # as the browser would over https
    )
    assert answer.status_code == 303
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("conveyor_session=")
    )
    assert "secure" in {a.strip().lower() for a in cookie.split(";")}


def test_a_token_is_hashed_once_and_still_revocable(
    served: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.server import auth

    hashed: list[str] = []

    def counting(secret: str, stored: str) -> bool:
        hashed.append(stored)
        return verify_secret(secret, stored)

    monkeypatch.setattr(auth, "verify_secret", counting)
    me = served.as_user("viewer")
    for _ in range(3):
        assert served.client.get("/api/v1/whoami", headers=me).status_code == 200
    assert len(hashed) == 1  # scrypt (~100 ms) once; then the remembered digest
    token_id = served.tokens["viewer"].split("_")[1]
    revoke_token(served.context.users_file, "viewer", token_id, datetime.now(UTC))
    revoked = served.client.get("/api/v1/whoami", headers=me)
    assert revoked.status_code == 401 and "was revoked" in revoked.json()["reason"]
    wrong = served.tokens["viewer"][:-3] + "abc"
    assert (
        served.client.get(
            "/api/v1/whoami", headers={"Authorization": f"Bearer {wrong}"}
        ).status_code
        == 401
    )
