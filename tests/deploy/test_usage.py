"""A replica's saturation counts its whole process tree: workers, and workers gone by."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psutil
import pytest

from conveyor.deploy.runtimes.usage import replicas_usage, tree_usage

MiB = 1024 * 1024
# A worker that holds 64 MiB and 16 files, says so, and waits to be killed.
WORKER = textwrap.dedent(
    """
    import sys, time
    ballast = bytearray(64 * 1024 * 1024)
    files = [open(sys.executable, "rb") for _ in range(16)]
    print("ready", flush=True)
    time.sleep(60)
    """
)
# A worker that burns CPU for 0.4 s and exits.
BURNER = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
# A main process that starts one worker and waits for it to be ready (or gone).
MAIN = textwrap.dedent(
    """
    import subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE)
    worker.stdout.readline()
    worker.wait() if sys.argv[2] == "reap" else None
    print("ready", flush=True)
    time.sleep(60)
    """
)


def start_main(worker: str, reap: bool) -> subprocess.Popen[str]:
    main = subprocess.Popen(
        [sys.executable, "-c", MAIN, worker, "reap" if reap else "keep"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert main.stdout is not None
    assert main.stdout.readline().strip() == "ready"
    return main


@pytest.fixture
def mains() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for main in started:
        for child in psutil.Process(main.pid).children(recursive=True):
            child.kill()
        main.kill()
        main.communicate()  # reaps it and closes its stdout


def test_the_workers_memory_and_files_count_with_the_main_process(
    mains: list[subprocess.Popen[str]],
) -> None:
    main = start_main(WORKER, reap=False)
    mains.append(main)
    alone = psutil.Process(main.pid)

    usage = tree_usage(main.pid)

    assert usage.memory_bytes >= alone.memory_info().rss + 60 * MiB
    assert usage.open_files >= alone.num_fds() + 16


def test_a_reaped_workers_cpu_time_stays_counted(mains: list[subprocess.Popen[str]]) -> None:
    main = start_main(BURNER, reap=True)
    mains.append(main)
    assert psutil.Process(main.pid).children() == []  # the burner is gone

    assert tree_usage(main.pid).cpu_seconds >= 0.35


def test_replicas_add_up_and_a_gone_process_counts_nothing(
    mains: list[subprocess.Popen[str]],
) -> None:
    mains.extend(start_main(WORKER, reap=False) for _ in range(2))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()

    one, two = (tree_usage(main.pid) for main in mains)
    both = replicas_usage([mains[0].pid, mains[1].pid, gone.pid])

    assert tree_usage(gone.pid).memory_bytes == 0
    assert both.memory_bytes >= 2 * 60 * MiB
    assert both.open_files >= one.open_files + two.open_files - 4  # fds may close meanwhile
