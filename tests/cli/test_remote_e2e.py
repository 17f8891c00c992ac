"""The CLI against the real server app (`make_server`, tests/server/conftest.py), end to
end: the routes that exist on this branch. (The API's own routes join when merged.)"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

from conftest import run_cli
from server.conftest import MakeServer, make_server

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
