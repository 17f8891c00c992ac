"""The job graph's layout: columns by longest path from the roots, one edge per need."""

from __future__ import annotations

from conveyor.server.ui.graph import layers, layout
from conveyor.states import JobState
from conveyor.store.records import JobRecord


def _job(job_id: str, *needs: str, ordinal: int = 0) -> JobRecord:
    return JobRecord(
        run_id=1, job_id=job_id, ordinal=ordinal, name=job_id, matrix={},
        state=JobState.PENDING, plan_status=None, reason=None, needs=needs, attempts=0,
        exit_code=None, failure=None, detail=None, started_at=None, finished_at=None,
        cache_key=None, log_blob=None, outputs_blob=None,
    )  # fmt: skip


def test_a_job_sits_right_of_its_furthest_need() -> None:
    jobs = [_job("a"), _job("b", "a"), _job("c", "b"), _job("d", "a", "c"), _job("e")]
    assert layers(jobs) == {"a": 0, "b": 1, "c": 2, "d": 3, "e": 0}


def test_unknown_needs_and_cycles_do_not_break_the_layout() -> None:
    jobs = [_job("a", "gone"), _job("b", "c"), _job("c", "b")]
    found = layers(jobs)
    assert found["a"] == 0 and set(found) == {"a", "b", "c"}


def test_edges_join_each_need_to_its_job_and_nodes_do_not_overlap() -> None:
    jobs = [_job(f"j{i}", *([f"j{i - 1}"] if i else []), ordinal=i) for i in range(4)]
    jobs += [_job("side", "j0", ordinal=4)]
    graph = layout(jobs, lambda job: f"/log/{job.job_id}")
    assert {(e.source, e.target) for e in graph.edges} == {
        ("j0", "j1"), ("j1", "j2"), ("j2", "j3"), ("j0", "side"),
    }  # fmt: skip
    spots = [(n.x, n.y) for n in graph.nodes]
    assert len(set(spots)) == len(spots)
    assert all(n.x + graph.node_width <= graph.width for n in graph.nodes)
    assert all(n.y + graph.node_height <= graph.height for n in graph.nodes)
    assert graph.nodes[0].href == "/log/j0"
