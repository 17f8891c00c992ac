"""Replica logs: what keeping them costs the replica, and what reading them costs.

1. A replica writing 200,000 lines of ~100 bytes as fast as it can, its stdout a pipe to
   the supervisor's pump: straight into a file (no pump), through the pump copying the
   bytes as they come (before logs had stamps), and through the pump stamping each line
   with its time (now). The replica's own wall time is what a slower pump would show.
2. Reading: the newest 100 lines of a replica with 40 MiB of rotated logs (the default
   limits, full), the same filtered by level error, and the error-line counter reading
   10 MiB that a replica just wrote.

    .venv/bin/python bench/replica_logs.py --repeat 5
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import Figure, alternate, header, print_figures, print_samples, repeat_parser
from conveyor.deploy.log_errors import ErrorCounter
from conveyor.deploy.log_lines import Level
from conveyor.deploy.runtimes.log_source import ReplicaLog, replica_logs_in
from conveyor.deploy.runtimes.logs import LogLimits, Pump, RotatingLog, Stamper
from conveyor.engine.mask import Masker
from conveyor.observe.replica_logs import EnvironmentLogs, LogQuery, read_page

LINES = 200_000
WRITER = (
    "import sys\n"
    "line = ('GET /api/orders/42 200 in 3.1 ms ' + 'x' * 64 + '\\n').encode()\n"
    f"for _ in range({LINES}):\n"
    "    sys.stdout.buffer.write(line)\n"
)


def replica_seconds(folder: Path, mode: str) -> float:
    """Wall time of the writer, its stdout a file or a pipe to a pump."""
    log_path = folder / f"{mode}.log"
    started = time.perf_counter()
    if mode == "file":
        with log_path.open("wb") as sink:
            subprocess.run([sys.executable, "-c", WRITER], stdout=sink, check=True)
        return time.perf_counter() - started
    log = RotatingLog(log_path, LogLimits(max_bytes=10 * 1024 * 1024, keep=3))
    process = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE)
    assert process.stdout is not None
    pump = Pump(process.stdout, log)
    if mode == "pump, no stamps":
        pump.stamper = _identity  # type: ignore[assignment]
    process.wait()
    took = time.perf_counter() - started
    pump.join(30)
    log.close()
    for path in log.generations():
        path.unlink()
    return took


def _identity(chunk: bytes) -> bytes:
    return chunk


class Folder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def replica_logs(self, release_id: str) -> list[ReplicaLog]:
        return replica_logs_in(self.root / release_id)


def filled_release(root: Path, name: str, megabytes: int) -> None:
    """A replica's rotated logs, full: JSON lines, one in fifty an error."""
    (root / name).mkdir(parents=True)
    log = RotatingLog(root / name / "replica-0.log", LogLimits())
    stamper = Stamper()
    info = json.dumps({"level": "info", "msg": "served", "path": "/api/orders/42", "ms": 3.1})
    error = json.dumps({"level": "error", "msg": "payment failed", "order": 42})
    chunk = "".join((error if n % 50 == 0 else info) + "\n" for n in range(1000)).encode()
    for _ in range(megabytes * 1024 * 1024 // len(chunk)):
        log.write(stamper(chunk))
    log.close()


def main() -> None:
    arguments = repeat_parser(__doc__ or "").parse_args()
    header("Replica logs: the replica's cost, the reader's cost")
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        modes = ("file", "pump, no stamps", "pump, stamped")
        samples = alternate(
            {mode: (lambda m=mode: replica_seconds(root, m)) for mode in modes}, arguments.repeat
        )
        print_samples(
            f"A replica writing {LINES:,} lines (seconds)",
            [samples[m] for m in modes],
            samples["pump, no stamps"],
        )

        filled_release(root, "full", 40)
        logs = EnvironmentLogs("bench", ("full",), Folder(root), Masker(["s3cr3t-value"]))
        reads = alternate(
            {
                "newest 100": lambda: _timed(lambda: read_page(logs, LogQuery(limit=100))),
                "newest 100 errors": lambda: _timed(
                    lambda: read_page(logs, LogQuery(limit=100, level=Level.ERROR))
                ),
            },
            arguments.repeat,
        )
        print_samples("Reading 40 MiB of rotated logs (seconds)", list(reads.values()), None)

        def count_new() -> float:
            name = f"count-{time.perf_counter_ns()}"
            filled_release(root, name, 10)
            took = _timed(lambda: ErrorCounter(Folder(root)).count(name))
            for path in (root / name).iterdir():
                path.unlink()
            return took

        counted = alternate({"count errors in 10 MiB": count_new}, arguments.repeat)
        print_samples("The error-line counter", list(counted.values()), None)
        stamped, plain = samples["pump, stamped"].median, samples["pump, no stamps"].median
        print_figures(
            "Headline",
            [
                Figure("stamping's cost to the replica", (stamped / plain - 1) * 100, "%"),
                Figure("newest 100 lines", reads["newest 100"].median * 1000, "ms"),
                Figure("counter, per MiB", counted["count errors in 10 MiB"].median * 100, "ms"),
            ],
        )


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
