"""Replica log lines: stamped as read, parsed into fields (JSON or plain), followed through
rotation, and error lines counted per release."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conveyor.deploy.log_errors import ErrorCounter
from conveyor.deploy.log_lines import FileTail, Level, parse_line, split_stamp
from conveyor.deploy.runtimes.log_source import ReplicaLog, replica_logs_in
from conveyor.deploy.runtimes.logs import STAMP_LENGTH, LogLimits, RotatingLog, Stamper, stamp

T0 = 1_796_000_000.25  # 2026-11-30T...; any fixed time


def stamped(text: str, at: float = T0) -> bytes:
    return stamp(at) + text.encode()


def test_the_stamper_prefixes_every_line_once_even_across_chunks() -> None:
    times = iter([T0, T0 + 1, T0 + 2])
    stamper = Stamper(clock=lambda: next(times))

    out = stamper(b"one\ntw") + stamper(b"o\nthree\n") + stamper(b"four\n")

    lines = out.splitlines()
    assert [split_stamp(line)[1] for line in lines] == [b"one", b"two", b"three", b"four"]
    assert [split_stamp(line)[0] for line in lines] == [T0, T0, T0 + 1, T0 + 2]
    assert len(stamp(T0)) == STAMP_LENGTH


def test_a_json_line_is_parsed_into_level_message_logger_time_and_the_other_keys() -> None:
    body = {
        "level": "ERROR",
        "message": "payment failed",
        "logger": "shop.orders",
        "time": "2026-12-07T05:30:00.500Z",
        "order": 42,
        "user": {"id": 7},
    }
    line = parse_line(stamped(json.dumps(body)))

    assert line.level is Level.ERROR
    assert line.message == "payment failed"
    assert line.logger == "shop.orders"
    assert line.time == pytest.approx(1796621400.5)  # the line's own time
    assert line.received == pytest.approx(T0)  # when the runtime read it
    assert line.fields == {"order": 42, "user": {"id": 7}}


@pytest.mark.parametrize(
    ("body", "level", "message", "logger"),
    [
        ({"levelname": "warning", "msg": "slow"}, Level.WARNING, "slow", None),
        ({"severity": "CRITICAL", "event": "down", "name": "db"}, Level.CRITICAL, "down", "db"),
        ({"level": 50, "msg": "pino error"}, Level.ERROR, "pino error", None),
        ({"level": 30, "msg": "pino info"}, Level.INFO, "pino info", None),
        ({"msg": "no level"}, None, "no level", None),
    ],
)
def test_json_spellings_of_levels_and_messages(
    body: dict[str, object], level: Level | None, message: str, logger: str | None
) -> None:
    line = parse_line(stamped(json.dumps(body)))
    assert (line.level, line.message, line.logger) == (level, message, logger)
    assert line.time == pytest.approx(T0)  # no time of its own: when it was read


@pytest.mark.parametrize(
    ("text", "level", "message", "logger"),
    [
        ("GET / 200", None, "GET / 200", None),
        ("ERROR:shop.orders:payment failed", Level.ERROR, "payment failed", "shop.orders"),
        ("ERROR:    Exception in ASGI application", Level.ERROR, None, None),
        ("[warning] disk almost full", Level.WARNING, None, None),
        ("INFO: started", Level.INFO, None, None),
        ('{"not": "closed"', None, None, None),  # not JSON: a plain line
        ("[1, 2, 3]", None, None, None),  # JSON, not an object: a plain line
        ("errors are counted here", None, None, None),  # a word starting with a level's
    ],
)
def test_plain_lines_keep_their_text_and_a_leading_level_word(
    text: str, level: Level | None, message: str | None, logger: str | None
) -> None:
    line = parse_line(stamped(text))
    assert line.level == level
    assert line.message == (text if message is None else message)
    assert line.logger == logger
    assert line.fields == {}


def test_a_traceback_is_an_error_unless_the_line_before_already_was() -> None:
    traceback = stamped("Traceback (most recent call last):")
    assert parse_line(traceback).level is Level.ERROR
    assert parse_line(traceback, previous=Level.INFO).level is Level.ERROR
    assert parse_line(traceback, previous=Level.ERROR).level is None


def test_an_unstamped_line_has_no_received_time() -> None:
    line = parse_line(b"written before stamps existed")
    assert (line.received, line.time, line.message) == (None, None, "written before stamps existed")


def write(log: RotatingLog, *texts: str) -> None:
    log.write(b"".join(stamped(text) + b"\n" for text in texts))


def test_a_tail_reads_only_what_was_added_and_follows_the_files_through_rotation(
    tmp_path: Path,
) -> None:
    log = RotatingLog(tmp_path / "replica-0.log", LogLimits(max_bytes=1024, keep=2))
    write(log, "before")
    tail = FileTail()
    assert tail.read(log.generations()) == []  # the first read only notes where files end

    write(log, *(f"line {n:03d} " + "." * 40 for n in range(60)))  # rotates twice
    log.write(stamp(T0) + b"partial")  # a line still being written: left for later
    read = tail.read(log.generations())

    texts = [split_stamp(line.data)[1].decode()[:8] for line in read]
    # Each line once, oldest first; lines of the dropped generation are lost, none doubled.
    assert texts == sorted(set(texts))
    assert texts[-1] == "line 059"
    assert len({(line.inode, line.offset) for line in read}) == len(read)

    log.write(b" now whole\n")
    [last] = tail.read(log.generations())
    assert split_stamp(last.data)[1] == b"partial now whole"
    assert tail.read(log.generations()) == []
    log.close()


class Folder:
    """A runtime whose releases' logs are folders under `root` (the LogSource Protocol)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def replica_logs(self, release_id: str) -> list[ReplicaLog]:
        return replica_logs_in(self.root / release_id)


def test_the_error_counter_counts_error_lines_per_release_once_for_every_reader(
    tmp_path: Path,
) -> None:
    (tmp_path / "r1").mkdir()
    log = RotatingLog(tmp_path / "r1" / "replica-0.log", LogLimits(max_bytes=2048, keep=3))
    write(log, json.dumps({"level": "error", "msg": "before any reader"}))
    counter = ErrorCounter(Folder(tmp_path))
    assert counter("r1") == 1  # what the files hold is counted once

    write(
        log,
        json.dumps({"level": "error", "msg": "payment failed"}),
        json.dumps({"level": "info", "msg": "error budget ok"}),  # the word, not the level
        "ERROR:root:boom",
        "Traceback (most recent call last):",  # the same exception: not counted again
        '  File "app.py", line 3',
        "RuntimeError: boom",
        "CRITICAL: down",
        "GET / 200",
    )
    assert counter("r1") == 4
    # Another reader (another process: the server's watch beside a deploy) shares the count.
    other = ErrorCounter(Folder(tmp_path))
    assert other("r1") == 4
    write(log, *(json.dumps({"level": "error", "n": n, "pad": "." * 100}) for n in range(30)))
    assert other("r1") == 34  # across a rotation
    assert counter("r1") == 34  # nothing counted twice
    log2 = RotatingLog(tmp_path / "r1" / "replica-1.log", LogLimits())
    write(log2, "ERROR: from a replica started later")
    assert counter("r1") == 35
    assert counter("missing") == 0
    (tmp_path / "r1" / "replica-0.errors").write_text("{damaged")
    # A damaged count starts again from what the files hold (to readers, a reset).
    assert 1 <= counter("r1") <= 35
    log.close()
    log2.close()


def test_replica_logs_are_found_by_replica_newest_file_first(tmp_path: Path) -> None:
    for name in ("replica-1.log", "replica-0.log.2", "replica-0.log", "replica-0.log.1", "x"):
        (tmp_path / name).write_text("")
    logs = replica_logs_in(tmp_path)
    assert [(log.replica, [p.name for p in log.files]) for log in logs] == [
        (0, ["replica-0.log", "replica-0.log.1", "replica-0.log.2"]),
        (1, ["replica-1.log"]),
    ]
    assert replica_logs_in(tmp_path / "none") == []
    assert os.path.exists(tmp_path / "x")


@pytest.mark.parametrize(
    "text",
    [
        '{"level": NaN, "msg": "x"}',
        '{"level": Infinity, "time": -Infinity, "msg": "x"}',
        '{"time": "not a time", "level": ["error"], "msg": {"nested": 1}}',
        "9999-99-99T99:99:99.999Z looks like a stamp",
        "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    ],
)
def test_hostile_lines_parse_without_raising(text: str) -> None:
    for raw in (stamped(text), text.encode()):
        line = parse_line(raw)
        assert line.level in (None, *Level)
        assert line.time is None or line.time == pytest.approx(T0)


def test_a_line_that_looks_like_a_stamp_but_is_not_a_time_is_kept_whole() -> None:
    raw = b"9999-99-99T99:99:99.999Z not ours"
    assert split_stamp(raw) == (None, raw)
