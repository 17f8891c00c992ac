"""What a replica's processes use: its main process and every process under it.

A replica is often a tree: uvicorn or gunicorn workers, a shell running the server. Its
saturation counts the whole tree, read through psutil:
- cpu_seconds: user + system time of each live process, plus the time of the children
  each one has already reaped, so the counter keeps rising when a worker exits;
- memory_bytes: the sum of resident set sizes (pages shared by forked workers count once
  per process, as `ps` shows them: an upper bound);
- open_files: the sum of open file descriptors.
A process that exits while it is read is left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import psutil

from conveyor.deploy.model import Saturation

NONE = Saturation(cpu_seconds=0.0, memory_bytes=0, open_files=0)


def tree_usage(pid: int) -> Saturation:
    """The usage of process `pid` and all its descendants (zero if it is gone)."""
    try:
        root = psutil.Process(pid)
        below = _descendants(pid)
        processes = [root, *(_process(p) for p in below)] if below is not None else None
        if processes is None:
            processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return NONE
    return _sum(_usage(process) for process in processes if process is not None)


def _descendants(pid: int) -> list[int] | None:
    """The pids under `pid`, from /proc/PID/task/TID/children: a few small reads, where
    psutil's `children` reads the parent of every process on the machine (the continuous
    watch asks for every replica every second). None where the kernel has no such file."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            if parent == pid:
                return None
            continue  # exited while read
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as listing:
                    children = [int(child) for child in listing.read().split()]
            except FileNotFoundError:
                if parent == pid:
                    return None  # no CONFIG_PROC_CHILDREN: psutil's way
                continue
            except (OSError, ValueError):
                continue
            found += children
            pending += children
    return found


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:  # exited between the two reads
        return None


def replicas_usage(pids: Iterable[int]) -> Saturation:
    """The usage of several replicas, each a process tree."""
    return _sum(tree_usage(pid) for pid in pids)


def _usage(process: psutil.Process) -> Saturation:
    try:
        with process.oneshot():
            times = process.cpu_times()
            return Saturation(
                cpu_seconds=times.user + times.system + times.children_user + times.children_system,
                memory_bytes=process.memory_info().rss,
                open_files=process.num_fds(),
            )
    except psutil.Error:  # exited (or became a zombie) while read
        return NONE


def _sum(parts: Iterable[Saturation]) -> Saturation:
    cpu, memory, files = 0.0, 0, 0
    for part in parts:
        cpu += part.cpu_seconds
        memory += part.memory_bytes
        files += part.open_files
    return Saturation(cpu_seconds=cpu, memory_bytes=memory, open_files=files)
