"""Reading an environment's replica logs: newest first, filters, pages, masking, follow."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.deploy.log_lines import Level
from conveyor.deploy.runtimes.logs import LogLimits, RotatingLog, stamp
from conveyor.engine.mask import Masker
from conveyor.errors import ConveyorError, NotFoundError
from conveyor.observe.replica_logs import (
    EnvironmentLogs,
    LogEntry,
    LogQuery,
    decode_cursor,
    follow_logs,
    parse_level,
    parse_since,
    read_page,
)
from observe.test_log_lines import Folder

T0 = 1_796_000_000.0
SECRET = "s3cr3t-token-value"


class Logs:
    """Two releases' replicas writing stamped lines at chosen times."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[tuple[str, int], RotatingLog] = {}

    def write(self, release: str, replica: int, at: float, *texts: str) -> None:
        key = (release, replica)
        if key not in self.files:
            (self.root / release).mkdir(exist_ok=True)
            path = self.root / release / f"replica-{replica}.log"
            self.files[key] = RotatingLog(path, LogLimits(max_bytes=4096, keep=2))
        self.files[key].write(b"".join(stamp(at) + text.encode() + b"\n" for text in texts))

    def environment(self, releases: tuple[str, ...] = ("web-v1", "web-v2")) -> EnvironmentLogs:
        return EnvironmentLogs("staging", releases, Folder(self.root), Masker([SECRET]))

    def close(self) -> None:
        for log in self.files.values():
            log.close()


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[Logs]:
    made = Logs(tmp_path)
    made.write("web-v1", 0, T0, "started v1", json.dumps({"level": "info", "msg": "ready"}))
    made.write("web-v2", 0, T0 + 10, "started v2")
    made.write("web-v2", 1, T0 + 11, json.dumps({"level": "error", "msg": "boom", "order": 3}))
    made.write("web-v2", 0, T0 + 12, f"ERROR:shop:token {SECRET} refused")
    made.write("web-v1", 0, T0 + 13, "GET / 200")
    yield made
    made.close()


def messages(entries: list[LogEntry]) -> list[str]:
    return [entry.message for entry in entries]


def test_the_newest_lines_of_every_release_and_replica_come_first(logs: Logs) -> None:
    page = read_page(logs.environment(), LogQuery(limit=10))
    assert messages(page.items) == [
        "GET / 200",
        "token *** refused",
        "boom",
        "started v2",
        "ready",
        "started v1",
    ]
    assert page.next_cursor is None
    boom = page.items[2]
    assert (boom.release, boom.replica, boom.level, boom.fields) == (
        "web-v2",
        1,
        "error",
        {"order": 3},
    )
    assert boom.time == boom.received == T0 + 11


def test_pages_follow_the_cursor_without_repeating_or_skipping(logs: Logs) -> None:
    environment, seen = logs.environment(), []
    query = LogQuery(limit=4)
    while True:
        page = read_page(environment, query)
        seen.extend(messages(page.items))
        if page.next_cursor is None:
            break
        query = LogQuery(limit=4, before=decode_cursor(page.next_cursor))
    assert seen == messages(read_page(environment, LogQuery(limit=50)).items)
    assert len(seen) == 6


def test_filters_release_text_time_and_level(logs: Logs) -> None:
    environment = logs.environment()

    def shown(**filters: object) -> list[str]:
        return messages(read_page(environment, LogQuery(limit=50, **filters)).items)  # type: ignore[arg-type]

    assert shown(release="web-v1") == ["GET / 200", "ready", "started v1"]
    assert shown(release="web-v2", level=Level.ERROR) == ["token *** refused", "boom"]
    assert shown(grep="STARTED") == ["started v2", "started v1"]
    assert shown(grep='"order"') == ["boom"]  # the line as written: a JSON line's keys too
    assert shown(since=T0 + 11.5) == ["GET / 200", "token *** refused"]
    assert shown(level=Level.INFO, release="web-v1") == ["ready"]  # a line without a level is out
    with pytest.raises(NotFoundError, match="more than one"):
        read_page(environment, LogQuery(release="web"))
    with pytest.raises(NotFoundError, match="no release 'web-v9'"):
        read_page(environment, LogQuery(release="web-v9"))


def test_a_release_id_prefix_names_one_release(logs: Logs) -> None:
    page = read_page(logs.environment(("web-v1", "other-v2")), LogQuery(release="web"))
    assert {entry.release for entry in page.items} == {"web-v1"}


def test_secrets_are_masked_before_the_text_filter_sees_them(logs: Logs) -> None:
    environment = logs.environment()
    assert read_page(environment, LogQuery(grep=SECRET)).items == []
    logs.write(
        "web-v2", 0, T0 + 20, json.dumps({"level": "error", "msg": f"key {SECRET}", "k": SECRET})
    )
    [entry] = read_page(environment, LogQuery(limit=1)).items
    assert (entry.message, entry.fields) == ("key ***", {"k": "***"})


def test_newest_n_reads_only_as_far_back_as_needed_over_rotated_files(logs: Logs) -> None:
    for n in range(200):  # ~25 kB per replica: rotated at 4 kB, two older files kept
        logs.write("web-v1", 0, T0 + 100 + n, f"request {n:03d} " + "." * 100)
    page = read_page(logs.environment(), LogQuery(release="web-v1", limit=3))
    assert messages(page.items)[0].startswith("request 199")
    assert [m[:11] for m in messages(page.items)] == ["request 199", "request 198", "request 197"]
    oldest_kept = read_page(logs.environment(), LogQuery(release="web-v1", limit=200)).items[-1]
    assert oldest_kept.message.startswith("request 1")  # older lines were rotated away
    assert len(list((logs.root / "web-v1").iterdir())) == 3  # replica-0.log, .1, .2


def test_follow_yields_new_lines_oldest_first_and_new_releases_from_their_start(
    logs: Logs,
) -> None:
    releases = ["web-v1", "web-v2"]
    stop = threading.Event()
    shown = follow_logs(
        lambda: logs.environment(tuple(releases)),
        LogQuery(level=Level.ERROR),
        stop=stop.is_set,
        poll=0.01,
    )
    logs.write("web-v1", 0, T0 + 30, "ERROR: first", "INFO: not shown")
    logs.write("web-v2", 1, T0 + 31, json.dumps({"level": "critical", "msg": "second"}))
    assert next(shown).message == "ERROR: first"
    assert next(shown).message == "second"
    logs.write("web-v3", 0, T0 + 32, "ERROR: written before its release was known")
    releases.append("web-v3")
    assert next(shown).release == "web-v3"
    stop.set()
    assert list(shown) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10m", T0 - 600),
        ("1h30m", T0 - 5400),
        ("2026-12-07T05:30:00", 1796621400.0),
        ("2026-12-07T06:30:00+01:00", 1796621400.0),
    ],
)
def test_since_is_a_duration_ago_or_a_time(text: str, expected: float) -> None:
    assert parse_since(text, now=T0) == expected


@pytest.mark.parametrize("text", ["yesterday", "-5m", "10 parsecs", ""])
def test_a_bad_since_says_what_it_takes(text: str) -> None:
    with pytest.raises(ConveyorError, match="neither a duration nor a time"):
        parse_since(text, now=T0)


def test_levels_and_cursors_refuse_what_they_do_not_know() -> None:
    assert parse_level("WARN") is Level.WARNING
    with pytest.raises(ConveyorError, match="unknown level 'loud'"):
        parse_level("loud")
    with pytest.raises(ConveyorError, match="cursor"):
        decode_cursor("bm90LWEtY3Vyc29y")
