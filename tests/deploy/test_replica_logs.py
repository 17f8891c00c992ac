"""Replica logs rotate by size and keep a bounded number of older files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.deploy.log_lines import split_stamp
from conveyor.deploy.runtimes.logs import (
    DEFAULT_KEEP,
    DEFAULT_MAX_BYTES,
    KEEP_ENV,
    MAX_BYTES_ENV,
    LogLimits,
    Pump,
    RotatingLog,
)
from conveyor.errors import ConveyorError


def line(n: int) -> bytes:
    return f"line {n:04d} ".encode().ljust(99, b".") + b"\n"  # 100 bytes


def test_a_log_moves_aside_before_it_passes_the_limit_and_keeps_a_few(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "replica-0.log", LogLimits(max_bytes=1000, keep=2))

    for n in range(45):
        log.write(line(n))
    log.close()

    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == ["replica-0.log", "replica-0.log.1", "replica-0.log.2"]
    assert all(path.stat().st_size <= 1000 for path in tmp_path.iterdir())
    # The newest lines are in the current file, the ones before in .1, then .2.
    assert (tmp_path / "replica-0.log").read_bytes() == b"".join(map(line, range(40, 45)))
    assert (tmp_path / "replica-0.log.1").read_bytes() == b"".join(map(line, range(30, 40)))
    assert (tmp_path / "replica-0.log.2").read_bytes() == b"".join(map(line, range(20, 30)))


def test_a_reopened_log_counts_what_is_already_there(tmp_path: Path) -> None:
    path = tmp_path / "replica-0.log"
    path.write_bytes(line(0) * 9)  # a supervisor before this one wrote 900 bytes
    log = RotatingLog(path, LogLimits(max_bytes=1000, keep=1))

    log.write(line(1) * 2)
    log.close()

    assert (tmp_path / "replica-0.log.1").read_bytes() == line(0) * 9
    assert path.read_bytes() == line(1) * 2
    assert log.generations() == [path, tmp_path / "replica-0.log.1"]


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "replica-0.log", LogLimits(max_bytes=1000, keep=0))

    for n in range(25):
        log.write(line(n))
    log.close()

    assert [p.name for p in tmp_path.iterdir()] == ["replica-0.log"]
    assert (tmp_path / "replica-0.log").read_bytes() == b"".join(map(line, range(20, 25)))


def test_the_pump_copies_the_pipe_and_keeps_the_last_line(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "replica-0.log", LogLimits(max_bytes=1000, keep=1))
    read_end, write_end = os.pipe()
    pump = Pump(os.fdopen(read_end, "rb"), log)

    os.write(write_end, b"".join(map(line, range(15))) + b"Traceback: boom\n\n")
    os.close(write_end)
    pump.join(5.0)
    log.close()

    assert not pump.thread.is_alive()
    assert pump.last_line() == "Traceback: boom"
    written = b"".join(path.read_bytes() for path in reversed(log.generations()))
    # Each line starts with the time the pump read it.
    assert [split_stamp(each)[0] is not None for each in written.splitlines()] == [True] * 17
    unstamped = b"".join(split_stamp(each)[1] + b"\n" for each in written.splitlines())
    assert unstamped == b"".join(map(line, range(15))) + b"Traceback: boom\n\n"


def test_the_limits_come_from_the_environment() -> None:
    assert LogLimits.from_env({}) == LogLimits(DEFAULT_MAX_BYTES, DEFAULT_KEEP)
    assert LogLimits.from_env({MAX_BYTES_ENV: "65536", KEEP_ENV: "0"}) == LogLimits(65536, 0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({MAX_BYTES_ENV: "10MB"}, f"{MAX_BYTES_ENV} must be a whole number >= 1024, not '10MB'"),
        ({MAX_BYTES_ENV: "12"}, f"{MAX_BYTES_ENV} must be a whole number >= 1024"),
        ({KEEP_ENV: "-1"}, f"{KEEP_ENV} must be a whole number >= 0"),
    ],
)
def test_bad_limits_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConveyorError, match=message):
        LogLimits.from_env(env)


def test_writes_after_close_are_dropped(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "replica-0.log", LogLimits(max_bytes=1000, keep=1))
    log.write(line(0))
    log.close()

    log.write(line(1))  # a pump whose pipe a detached grandchild kept open

    assert (tmp_path / "replica-0.log").read_bytes() == line(0)


def test_a_chunk_larger_than_a_file_is_split_at_line_ends(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "replica-0.log", LogLimits(max_bytes=1000, keep=3))
    log.write(b"".join(map(line, range(25))))  # 2,500 bytes at once: stamps make chunks grow
    log.close()

    files = log.generations()
    assert all(path.stat().st_size <= 1000 for path in files)
    assert b"".join(path.read_bytes() for path in reversed(files)) == b"".join(map(line, range(25)))
    assert all(path.read_bytes().endswith(b"\n") for path in files)
