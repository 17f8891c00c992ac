"""The CLI against the real server app (`make_server`, tests/server/conftest.py), end to
end: the routes that exist on this branch. (The API's own routes join when merged.)"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

from conftest import CliResult, run_cli
from server.conftest import MakeServer, ServerUnderTest, make_server

__all__ = ["make_server"]


def test_whoami_against_the_real_server(make_server: MakeServer, tmp_path: Path) -> None:
    served = make_server()
    with mock.patch.dict(os.environ, {"CONVEYOR_TOKEN": served.tokens["reviewer"]}):
        text = run_cli(["--server", served.url, "whoami"], tmp_path)
        as_json = run_cli(["--server", served.url + "/", "whoami", "-o", "json"], tmp_path)
    refused = run_cli(["--server", served.url, "whoami"], tmp_path)

    assert text.exit_code == 0, text.stderr
    assert text.stdout == f"reviewer (roles: reviewer) on {served.url}\n"
    assert as_json.json() == {"name": "reviewer", "roles": ["reviewer"], "via": "token"}
    assert refused.exit_code == 1 and "the server refused you" in refused.stderr


def _remote(served: ServerUnderTest, where: Path, *args: str, user: str = "viewer") -> CliResult:
    with mock.patch.dict(os.environ, {"CONVEYOR_TOKEN": served.tokens[user]}):
        return run_cli(["--server", served.url, *args], where)


def test_reads_against_the_real_api_print_what_the_local_cli_prints(
    make_server: MakeServer, tmp_path: Path
) -> None:
    served = make_server()
    outcome = served.project.run()
    run = str(outcome.run_id)
    for args in (
        ["status", run],
        ["status", run, "-o", "json"],
        ["history"],
        ["history", "-o", "json"],
        ["logs", run, "build"],
        ["approvals", "ls"],
    ):
        local = run_cli(list(args), served.project.root)
        remote = _remote(served, tmp_path, *args)
        assert remote.exit_code == local.exit_code == 0, (args, remote.stderr, local.stderr)
        assert remote.stdout == local.stdout, args


def test_a_missing_run_is_not_found_against_the_real_api(
    make_server: MakeServer, tmp_path: Path
) -> None:
    served = make_server()
    missing = _remote(served, tmp_path, "status", "999")
    assert missing.exit_code == 4 and "999" in missing.stderr
