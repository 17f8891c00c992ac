"""A job's log file: one record per physical line, whatever a writer hands it."""

from __future__ import annotations

from pathlib import Path

from conveyor.engine.joblog import JobLog, parse_log_line
from conveyor.engine.mask import Masker
from conveyor.engine.report import SilentReporter
from conveyor.engine.step import Stream


def test_a_multi_line_command_echo_is_one_record_per_line_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    log = JobLog(path, "e2e", Masker(["Kp4Lm6Nq8Rs0"]), SilentReporter())

    log.write(Stream.STDOUT, '$ echo one\necho "Kp4Lm6Nq8Rs0"\n')
    log.close()

    records = [parse_log_line(raw) for raw in path.read_text().splitlines()]
    assert [(stream, text) for _, stream, text in records] == [
        (Stream.STDOUT, "$ echo one"),
        (Stream.STDOUT, 'echo "***"'),
        (Stream.STDOUT, ""),
    ]
