"""A run's job graph laid out for SVG on the server: columns by longest path from the
roots (a job sits one column right of its furthest need), rows ordered so edges cross
less (each job near the mean row of its needs), edges as curves from `needs`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conveyor.store.records import JobRecord

NODE_WIDTH = 180
NODE_HEIGHT = 44
COLUMN_GAP = 56
ROW_GAP = 14
MARGIN = 8
LABEL_CHARS = 24


@dataclass(frozen=True)
class Node:
    job: JobRecord
    x: int
    y: int
    label: str  # the name, shortened to fit; the full id is the node's title
    href: str


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str  # SVG path data


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def layers(jobs: Sequence[JobRecord]) -> dict[str, int]:
    """Each job's column: 0 for roots, else 1 + the largest column of its needs (needs
    naming no job of the run are ignored; a cycle, which the planner refuses, is cut)."""
    known = {job.job_id: job for job in jobs}
    column: dict[str, int] = {}
    for job in jobs:
        stack: list[tuple[str, bool]] = [(job.job_id, False)]
        visiting: set[str] = set()
        while stack:
            job_id, expanded = stack.pop()
            if job_id in column:
                continue
            needs = [n for n in known[job_id].needs if n in known and n not in visiting]
            if expanded:
                visiting.discard(job_id)
                column[job_id] = 1 + max((column.get(n, 0) for n in needs), default=-1)
                continue
            visiting.add(job_id)
            stack.append((job_id, True))
            stack.extend((n, False) for n in needs if n not in column)
    return column


def layout(jobs: Sequence[JobRecord], href: Callable[[JobRecord], str]) -> Graph:
    column = layers(jobs)
    by_column: dict[int, list[JobRecord]] = {}
    for job in jobs:  # planned order within a column to start with
        by_column.setdefault(column[job.job_id], []).append(job)
    row: dict[str, float] = {}
    for index in sorted(by_column):
        members = by_column[index]
        for position, job in enumerate(members):
            parents = [row[n] for n in job.needs if n in row]
            row[job.job_id] = sum(parents) / len(parents) if parents else position
        members.sort(key=lambda j: (row[j.job_id], j.ordinal))
        for position, job in enumerate(members):
            row[job.job_id] = position
    nodes = [
        Node(
            job,
            MARGIN + column[job.job_id] * (NODE_WIDTH + COLUMN_GAP),
            MARGIN + int(row[job.job_id]) * (NODE_HEIGHT + ROW_GAP),
            _label(job.name if not job.matrix else job.job_id),
            href(job),
        )
        for job in jobs
    ]
    placed = {node.job.job_id: node for node in nodes}
    edges = [
        Edge(need, node.job.job_id, _curve(placed[need], node))
        for node in nodes
        for need in node.job.needs
        if need in placed
    ]
    rows = max((len(m) for m in by_column.values()), default=0)
    return Graph(
        width=2 * MARGIN + max(1, len(by_column)) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP,
        height=2 * MARGIN + max(1, rows) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP,
        nodes=nodes,
        edges=edges,
    )


def _label(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def _curve(source: Node, target: Node) -> str:
    x1, y1 = source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2
    x2, y2 = target.x, target.y + NODE_HEIGHT // 2
    middle = (x1 + x2) // 2
    return f"M{x1},{y1} C{middle},{y1} {middle},{y2} {x2},{y2}"
