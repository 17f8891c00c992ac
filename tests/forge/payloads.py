"""Deliveries shaped as each forge documents them (GitHub's webhook events and payloads,
GitLab's webhook events, Gitea's webhooks page), cut to the fields around what Conveyor
reads, plus helpers that sign them as the forge would."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from conveyor.forge.signatures import sign_standard

SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"
BEFORE = "28e1879d029cb852e4844d9c718537df08844e03"
ZERO = "0" * 40
SECRET = "It's a Secret to Everybody"


def github_push(sha: str = SHA, ref: str = "refs/heads/main", **repo: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "before": BEFORE,
        "after": sha,
        "created": False,
        "deleted": sha == ZERO,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/acme/shop/compare/{BEFORE[:12]}...{sha[:12]}",
        "commits": [{"id": sha, "message": "Fix the cart", "distinct": True}],
        "head_commit": {"id": sha, "message": "Fix the cart"},
        "repository": {
            "id": 1296269,
            "name": "shop",
            "full_name": repo.get("full_name", "acme/shop"),
            "private": False,
            "owner": {"login": "acme", "id": 1},
            "html_url": "https://github.com/acme/shop",
            "clone_url": repo.get("clone_url", "https://github.com/acme/shop.git"),
            "ssh_url": "git@github.com:acme/shop.git",
            "git_url": "git://github.com/acme/shop.git",
            "default_branch": "main",
        },
        "pusher": {"name": "ada", "email": "ada@example.org"},
        "sender": {"login": "ada", "id": 583231, "type": "User"},
    }


def github_pull_request(action: str = "opened", sha: str = SHA) -> dict[str, Any]:
    repository = github_push()["repository"]
    return {
        "action": action,
        "number": 42,
        "pull_request": {
            "url": "https://api.github.com/repos/acme/shop/pulls/42",
            "number": 42,
            "state": "open",
            "title": "Faster cart",
            "user": {"login": "grace"},
            "head": {
                "label": "grace:faster-cart",
                "ref": "faster-cart",
                "sha": sha,
                "repo": {**repository, "full_name": "grace/shop"},
            },
            "base": {"label": "acme:main", "ref": "main", "sha": BEFORE, "repo": repository},
        },
        "repository": repository,
        "sender": {"login": "grace", "id": 2},
    }


def gitlab_push(sha: str = SHA, ref: str = "refs/heads/main") -> dict[str, Any]:
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": BEFORE,
        "after": sha,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": None if sha == ZERO else sha,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "Shop",
            "web_url": "https://gitlab.example.com/acme/shop",
            "git_ssh_url": "git@gitlab.example.com:acme/shop.git",
            "git_http_url": "https://gitlab.example.com/acme/shop.git",
            "namespace": "Acme",
            "path_with_namespace": "acme/shop",
            "default_branch": "main",
        },
        "commits": [{"id": sha, "message": "Fix the cart", "title": "Fix the cart"}],
        "total_commits_count": 1,
    }


def gitlab_merge_request(action: str = "open", oldrev: str | None = None) -> dict[str, Any]:
    project = gitlab_push()["project"]
    attributes: dict[str, Any] = {
        "id": 99,
        "iid": 7,
        "target_branch": "main",
        "source_branch": "faster-cart",
        "source_project_id": 15,
        "target_project_id": 15,
        "title": "Faster cart",
        "state": "opened",
        "merge_status": "unchecked",
        "url": "https://gitlab.example.com/acme/shop/-/merge_requests/7",
        "source": project,
        "target": project,
        "last_commit": {"id": SHA, "message": "Faster cart", "title": "Faster cart"},
        "action": action,
    }
    if oldrev is not None:
        attributes["oldrev"] = oldrev
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Administrator", "username": "root"},
        "project": project,
        "object_attributes": attributes,
    }


def gitea_push(sha: str = SHA, ref: str = "refs/heads/develop") -> dict[str, Any]:
    return {
        "ref": ref,
        "before": BEFORE,
        "after": sha,
        "compare_url": f"http://localhost:3000/gitea/webhooks/compare/{BEFORE}...{sha}",
        "commits": [{"id": sha, "message": "Webhooks Yay!"}],
        "repository": {
            "id": 140,
            "owner": {"id": 1, "login": "gitea", "full_name": "Gitea"},
            "name": "webhooks",
            "full_name": "gitea/webhooks",
            "html_url": "http://localhost:3000/gitea/webhooks",
            "clone_url": "http://localhost:3000/gitea/webhooks.git",
            "ssh_url": "ssh://gitea@localhost:2222/gitea/webhooks.git",
            "default_branch": "main",
        },
        "pusher": {"id": 1, "login": "gitea", "full_name": "Gitea"},
        "sender": {"id": 1, "login": "gitea", "full_name": "Gitea"},
    }


def gitea_pull_request(action: str = "opened") -> dict[str, Any]:
    repository = gitea_push()["repository"]
    return {
        "action": action,
        "number": 3,
        "pull_request": {
            "id": 11,
            "number": 3,
            "title": "Faster",
            "head": {"label": "feature/faster", "ref": "feature/faster", "sha": SHA},
            "base": {"label": "main", "ref": "main", "sha": BEFORE},
        },
        "repository": repository,
        "sender": {"id": 2, "login": "lunny"},
    }


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def hex_hmac(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(body: bytes, event: str = "push", secret: str = SECRET) -> dict[str, str]:
    return {
        "x-github-event": event,
        "x-github-delivery": str(uuid.uuid4()),
        "x-hub-signature-256": "sha256=" + hex_hmac(body, secret),
        "content-type": "application/json",
    }


def gitlab_headers(event: str = "Push Hook", secret: str = SECRET) -> dict[str, str]:
    return {
        "x-gitlab-event": event,
        "x-gitlab-event-uuid": str(uuid.uuid4()),
        "x-gitlab-token": secret,
        "content-type": "application/json",
    }


def gitea_headers(
    body: bytes, event: str = "push", secret: str = SECRET, brand: str = "gitea"
) -> dict[str, str]:
    return {
        f"x-{brand}-event": event,
        f"x-{brand}-delivery": str(uuid.uuid4()),
        f"x-{brand}-signature": hex_hmac(body, secret),
        "content-type": "application/json",
    }


def standard_headers(body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
    stamp = int(time.time() if at is None else at)
    message_id = f"msg_{uuid.uuid4().hex}"
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_standard(message_id, stamp, body, secret),
    }
