"""End to end with real git: a bare repository (the forge) whose `post-receive` hook
sends GitHub's push payload, signed with the secret, to the running server (with curl
when installed, else Python); `git push` to it from a clone queues a run of exactly the
pushed commit and branch, fetched into the server's mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from conftest import GIT_ENV, wait_until
from forge.payloads import SECRET
from server.forges import REPOSITORY, ForgeServer, MakeForgeServer, git, make_forge_server

__all__ = ["make_forge_server"]

HOOK = '''\
#!{python}
"""post-receive: GitHub's push delivery for each updated ref, signed, to the server."""
import hashlib, hmac, json, shutil, subprocess, sys, urllib.request, uuid

URL, SECRET, REPOSITORY, CLONE_URL = {url!r}, {secret!r}, {repository!r}, {clone_url!r}
for line in sys.stdin:
    before, after, ref = line.split()
    body = json.dumps({{
        "ref": ref, "before": before, "after": after, "deleted": set(after) == {{"0"}},
        "created": set(before) == {{"0"}}, "forced": False, "base_ref": None, "commits": [],
        "repository": {{"full_name": REPOSITORY, "clone_url": CLONE_URL}},
        "pusher": {{"name": "ada"}}, "sender": {{"login": "ada"}},
    }}).encode()
    headers = {{
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
    }}
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers["X-Hub-Signature-256"] = "sha256=" + digest
    curl = shutil.which("curl") if {use_curl!r} else None
    if curl:
        args = [curl, "-sS", "-X", "POST", "--data-binary", "@-", URL]
        for name, value in headers.items():
            args += ["-H", name + ": " + value]
        subprocess.run(args, input=body, check=True)
    else:
        request = urllib.request.Request(URL, data=body, headers=headers, method="POST")
        print(urllib.request.urlopen(request).read().decode())
'''


def install_hook(forge: ForgeServer, use_curl: bool = True) -> None:
    hook = forge.origin / "hooks" / "post-receive"
    hook.write_text(
        HOOK.format(
            python=sys.executable,
            url=f"{forge.served.url}/hooks/github",
            secret=SECRET,
            repository=REPOSITORY,
            clone_url=f"https://github.com/{REPOSITORY}.git",
            use_curl=use_curl,
        )
    )
    hook.chmod(0o755)


def push(forge: ForgeServer, branch: str) -> tuple[str, str]:
    """Commit on `branch` of the clone and `git push` it; the sha and git's output."""
    git(forge.work, "checkout", "-q", "-B", branch)
    (forge.work / "app.py").write_text(f"print({branch!r})\n")
    git(forge.work, "add", "-A")
    git(forge.work, "commit", "-q", "-m", f"work on {branch}")
    sha = git(forge.work, "rev-parse", "HEAD")
    done = subprocess.run(
        ["git", "-C", os.fspath(forge.work), "push", "origin", f"HEAD:refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_ENV},
    )
    return sha, done.stderr


def assert_run_appears(forge: ForgeServer, sha: str, branch: str) -> dict[str, Any]:
    """The push's queue entry, for exactly that commit and branch, its commit in the
    server's mirror, and the run the server's workers made of it, of that commit and
    branch, succeeded."""
    entries = wait_until(
        lambda: [e for e in forge.queue() if e["commit_sha"] == sha], f"a queue entry of {sha}"
    )
    [entry] = entries
    assert isinstance(entry, dict)
    assert (entry["branch"], entry["trigger"]["kind"], entry["trigger"]["forge"]) == (
        branch,
        "push",
        "github",
    )
    assert git(forge.mirror, "cat-file", "-t", sha) == "commit"
    store = forge.served.context.store
    run_id = wait_until(
        lambda: next((e["run_id"] for e in forge.queue() if e["id"] == entry["id"]), None),
        "the queue entry's run",
    )
    wait_until(lambda: store.get_run(run_id).state.finished, f"run {run_id} to finish")
    run = store.get_run(run_id)
    assert (run.commit_sha, run.branch, run.state.value) == (sha, branch, "success")
    assert run.trigger["kind"] == "push" and run.trigger["forge"] == "github"
    return entry


@pytest.mark.real
@pytest.mark.parametrize("use_curl", [True, False], ids=["curl", "python"])
def test_git_push_to_the_forge_queues_the_pushed_commit(
    make_forge_server: MakeForgeServer, use_curl: bool
) -> None:
    if use_curl:
        assert shutil.which("curl"), "curl is not installed"
    forge = make_forge_server("github")
    install_hook(forge, use_curl)

    sha, output = push(forge, "feature/e2e")

    assert '"outcome":"queued"' in output.replace(" ", ""), output
    assert_run_appears(forge, sha, "feature/e2e")
    # Deleting the branch is pushed too: ignored, nothing more queued.
    subprocess.run(
        ["git", "-C", os.fspath(forge.work), "push", "-q", "origin", ":refs/heads/feature/e2e"],
        check=True,
        capture_output=True,
    )
    assert [e["commit_sha"] for e in forge.queue()] == [sha]
    assert forge.deliveries()[-1]["outcome"] == "ignored"
