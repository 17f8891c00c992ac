"""A new supervisor's life lock: a starter's momentary probe is not another supervisor."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

from conveyor.deploy.runtimes import supervisor


def hold_lock(path: Path, seconds: float, held: threading.Event) -> None:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.set()
        time.sleep(seconds)


def test_a_lock_held_for_a_moment_is_waited_for(tmp_path: Path) -> None:
    held = threading.Event()
    probe = threading.Thread(target=hold_lock, args=(tmp_path / supervisor.LIFE_LOCK, 0.1, held))
    probe.start()
    held.wait()

    life = supervisor._take_life_lock(tmp_path)
    probe.join()

    assert life is not None
    life.close()
    assert (tmp_path / supervisor.PID_FILE).read_text().strip().isdigit()


def test_a_lock_held_for_good_means_another_supervisor(tmp_path: Path) -> None:
    held = threading.Event()
    patience = supervisor.LIFE_LOCK_PATIENCE
    other = threading.Thread(
        target=hold_lock, args=(tmp_path / supervisor.LIFE_LOCK, patience + 1, held)
    )
    other.start()
    held.wait()

    life = supervisor._take_life_lock(tmp_path)
    other.join()

    assert life is None
    assert not (tmp_path / supervisor.PID_FILE).exists()
