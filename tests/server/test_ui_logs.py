"""A job's log page: the tail first, earlier parts on demand, ANSI colours, the raw
download, masked text only; and the live file gets each line as it is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import wait_until
from conveyor.engine.executors.base import Stream
from conveyor.engine.joblog import JobLog
from conveyor.engine.mask import Masker
from conveyor.engine.report import SilentReporter
from conveyor.server.logs import TAIL_BYTES
from conveyor.store.records import NewJob, NewRun
from server.conftest import MakeServer, ServerUnderTest

BIG = """\
version: 1
name: big
jobs:
  noisy:
    run: >-
      python3 -c "[print(f'line {i:06d} ' + 'x' * 40) for i in range(4000)];
      print('\\x1b[1;31mred end\\x1b[0m')"
"""

SECRET_SPEC = """\
version: 1
name: secret
jobs:
  leaky:
    secrets: [TOKEN]
    run: echo "token is $TOKEN" && echo '<script>alert(1)</script>'
"""


def test_a_long_log_opens_on_its_tail_and_loads_earlier_parts(make_server: MakeServer) -> None:
    served = make_server(BIG)
    run = served.project.run()
    viewer = served.as_user("viewer")
    base = f"/runs/{run.run_id}/jobs/noisy/log"

    page = served.client.get(base, headers=viewer)

    assert page.status_code == 200
    assert '<span class="ansi-bold ansi-fg-1">red end</span>' in page.text
    numbers = [int(n) for n in re.findall(r"line (\d{6})", page.text)]
    assert numbers[-1] == 3999 and numbers[0] > 0  # the tail only
    assert numbers == list(range(numbers[0], 4000))  # whole lines, none cut
    assert len(page.text) < TAIL_BYTES * 2
    start = int(re.search(r'data-start="(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    earlier = served.client.get(f"{base}?end={start}", headers=viewer).text  # without JS
    before = [int(n) for n in re.findall(r"line (\d{6})", earlier)]
    assert before[-1] == numbers[0] - 1

    got = served.client.get(
        f"{base}/range", params={"offset": max(0, start - 4096), "length": 4096}, headers=viewer
    ).json()
    ranged = [int(n) for n in re.findall(r"line (\d{6})", got["html"])]
    assert got["end"] == start and ranged[-1] == numbers[0] - 1
    assert ranged == list(range(ranged[0], numbers[0]))
    assert got["finished"] is True


def test_the_download_is_the_whole_log_as_plain_text(make_server: MakeServer) -> None:
    served = make_server(BIG)
    run = served.project.run()

    got = served.client.get(
        f"/runs/{run.run_id}/jobs/noisy/log.txt", headers=served.as_user("viewer")
    )

    assert got.status_code == 200
    assert got.headers["content-type"].startswith("text/plain")
    assert "attachment" in got.headers["content-disposition"]
    lines = got.text.splitlines()
    assert [line for line in lines if line.startswith("line ")] == [
        f"line {i:06d} " + "x" * 40 for i in range(4000)
    ]
    assert "\x1b[1;31mred end\x1b[0m" in lines
    assert "\t" not in got.text  # no elapsed or stream columns


def test_secrets_are_masked_and_markup_escaped(
    make_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = make_server(SECRET_SPEC)
    monkeypatch.setenv("TOKEN", "Zq8Wv2Xy5Tu7")
    run = served.project.run()
    viewer = served.as_user("viewer")
    base = f"/runs/{run.run_id}/jobs/leaky/log"

    for path in (base, base + ".txt", base + "/range?offset=0"):
        text = served.client.get(path, headers=viewer).text
        assert "Zq8Wv2Xy5Tu7" not in text, path
        assert "token is ***" in text, path
    page = served.client.get(base, headers=viewer).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "<script>alert(1)" not in json.dumps(
        served.client.get(base + "/range?offset=0", headers=viewer).json()["html"]
    )


def test_the_live_log_file_has_each_line_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = JobLog(path, "job", Masker([]), SilentReporter())
    try:
        log.write(Stream.STDOUT, "first")
        wait_until(lambda: path.read_text().endswith("\tfirst\n"), "the line in the file", 1.0)
        log.write(Stream.STDERR, "second")
        assert path.read_text().endswith("\tstderr\tsecond\n")  # no buffering, no close
    finally:
        log.close()


def test_a_job_without_a_log_yet_opens_empty_and_live(served: ServerUnderTest) -> None:
    store = served.context.store
    run_id = store.create_run(NewRun(pipeline="demo"), [NewJob("build", "build")])
    viewer = served.as_user("viewer")

    page = served.client.get(f"/runs/{run_id}/jobs/build/log", headers=viewer)

    assert page.status_code == 200
    assert f'data-topic="log:{run_id}:build"' in page.text  # live: the job has not finished
    assert "load earlier" not in page.text
    assert served.client.get(f"/runs/{run_id}/jobs/build/log.txt", headers=viewer).text == ""
    missing = served.client.get(f"/runs/{run_id}/jobs/nope/log", headers=viewer)
    assert missing.status_code == 404
