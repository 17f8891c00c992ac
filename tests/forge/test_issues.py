"""Each forge's issue request as its documentation gives it, and answers that are not an
issue refused with one clear error (the HTTP exchange itself: tests/observe)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conveyor.errors import InfrastructureError
from conveyor.forge.gitea import Gitea
from conveyor.forge.github import GitHub
from conveyor.forge.gitlab import GitLab
from conveyor.forge.issues import create_issue
from conveyor.forge.model import Forge, Malformed, NewIssue

ISSUE = NewIssue("group/sub/shop", "Deflake the cart", "It flakes.", ("conveyor", "flaky"))


def test_github_request() -> None:
    request = GitHub().issue_request("https://api.github.com/", "T", ISSUE)
    assert (request.method, request.url) == (
        "POST",
        "https://api.github.com/repos/group/sub/shop/issues",
    )
    assert request.headers["Authorization"] == "Bearer T"
    assert request.headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert request.json == {
        "title": "Deflake the cart",
        "body": "It flakes.",
        "labels": ["conveyor", "flaky"],
    }


def test_gitlab_request_names_the_project_by_its_encoded_path() -> None:
    request = GitLab().issue_request("https://gitlab.example/api/v4", "T", ISSUE)
    assert request.url == "https://gitlab.example/api/v4/projects/group%2Fsub%2Fshop/issues"
    assert request.headers["PRIVATE-TOKEN"] == "T"
    assert request.json == {
        "title": "Deflake the cart",
        "description": "It flakes.",
        "labels": "conveyor,flaky",
    }


def test_gitea_request_writes_label_names_in_the_body() -> None:
    request = Gitea("forgejo").issue_request("https://git.example/api/v1", "T", ISSUE)
    assert request.url == "https://git.example/api/v1/repos/group/sub/shop/issues"
    assert request.headers["Authorization"] == "token T"
    assert request.json == {
        "title": "Deflake the cart",
        "body": "It flakes.\n\nLabels: conveyor, flaky",
    }


@pytest.mark.parametrize(
    ("forge", "answer"),
    [
        (GitHub(), {"number": 3, "html_url": "https://github.com/a/b/issues/3"}),
        (GitLab(), {"iid": 3, "web_url": "https://gitlab.com/a/b/-/issues/3"}),
        (Gitea(), {"number": 3, "html_url": "https://git.example/a/b/issues/3"}),
    ],
)
def test_a_created_issue_is_read(forge: Forge, answer: dict[str, Any]) -> None:
    created = forge.created_issue(answer)
    assert created.number == 3 and created.url.endswith("/3")


@pytest.mark.parametrize(
    "answer", [[], {"number": "3", "html_url": "x"}, {"number": 0, "html_url": "x"}, {"number": 3}]
)
def test_an_answer_that_is_not_an_issue_is_malformed(answer: object) -> None:
    with pytest.raises(Malformed):
        GitHub().created_issue(answer)


def test_a_201_that_is_not_an_issue_is_an_infrastructure_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(201, content=b"<html>"))
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(InfrastructureError, match="is not an issue"),
    ):
        create_issue(GitHub(), "https://api.github.com", "T", ISSUE, client=client)
