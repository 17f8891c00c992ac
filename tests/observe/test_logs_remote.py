"""`conveyor --server URL logs --env ENV`: the same lines as the local command, read
through GET /api/v1/environments/{name}/logs of a real server."""

from __future__ import annotations

import json

from cli.remote_server import FakeServer, fake_server
from observe.test_logs_cli import written

__all__ = ["fake_server"]


def test_remote_logs_print_what_the_local_logs_print(fake_server: FakeServer) -> None:
    project = fake_server.context.project
    lines = [json.dumps({"level": "error", "msg": f"failure {n}"}) for n in range(300)]
    written(project, "staging-app-0123456789ab", "started", *lines)

    paged = ["logs", "--env", "staging", "-o", "json", "-n", "250"]  # two pages of the API
    for args in (paged, ["logs", "--env", "staging", "--level", "error", "--grep", "ure 29"]):
        remote = fake_server.cli(*args)
        local = fake_server.local(*args)
        assert remote.exit_code == 0, remote.stderr
        assert remote.stdout == local.stdout
    page = json.loads(fake_server.cli(*paged).stdout)
    assert len(page["items"]) == 250 and page["next_cursor"]  # 51 older lines remain

    refused = fake_server.cli("logs", "--env", "staging", "-F")
    assert refused.exit_code == 2
    assert "needs the project here" in refused.stderr
