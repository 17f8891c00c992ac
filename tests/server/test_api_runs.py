"""The runs API: the list (pages, filters), a run with its jobs, one job, and log ranges."""

from __future__ import annotations

import json

import pytest

from conveyor.states import RunState
from server.conftest import ServerUnderTest

VIEWER = "viewer"


def _pages(served: ServerUnderTest, **params: str | int) -> list[list[int]]:
    """Every page of the list, following next_cursor to the end."""
    pages: list[list[int]] = []
    cursor = None
    while True:
        query: dict[str, str | int] = {**params, **({"cursor": cursor} if cursor else {})}
        body = served.client.get("/api/v1/runs", params=query, headers=served.as_user(VIEWER))
        assert body.status_code == 200, body.text
        found = body.json()
        pages.append([run["id"] for run in found["items"]])
        cursor = found["next_cursor"]
        if cursor is None:
            return pages


def test_the_list_needs_a_login(served: ServerUnderTest) -> None:
    answer = served.client.get("/api/v1/runs")
    assert answer.status_code == 401


def test_a_run_and_its_jobs_are_shown_as_conveyor_status_shows_them(
    served: ServerUnderTest,
) -> None:
    first = served.project.run().run_id
    again = served.project.run().run_id  # everything from the cache now
    answer = served.client.get(f"/api/v1/runs/{again}", headers=served.as_user(VIEWER))
    assert answer.status_code == 200
    body = answer.json()
    assert body["run"]["id"] == again and body["run"]["state"] == RunState.SUCCESS.value
    jobs = {job["job_id"]: job for job in body["jobs"]}
    assert set(jobs) == {"build", "test"}
    assert jobs["build"]["state"] == "cached" and jobs["build"]["cache_key"]
    assert jobs["build"]["finished_at"] is not None and jobs["test"]["needs"] == ["build"]
    assert jobs["build"]["detail"].startswith("cache hit")
    cli = served.client.get(f"/api/v1/runs/{first}", headers=served.as_user(VIEWER)).json()
    assert cli["jobs"][0]["state"] == "success"
    job = served.client.get(f"/api/v1/runs/{first}/jobs/test", headers=served.as_user(VIEWER))
    assert job.json()["job_id"] == "test" and job.json()["needs"] == ["build"]


def test_unknown_runs_and_jobs_answer_404_with_a_reason(served: ServerUnderTest) -> None:
    run_id = served.project.run().run_id
    missing = served.client.get("/api/v1/runs/999", headers=served.as_user(VIEWER))
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found" and "999" in missing.json()["reason"]
    job = served.client.get(f"/api/v1/runs/{run_id}/jobs/nope", headers=served.as_user(VIEWER))
    assert job.status_code == 404 and "build" in job.json()["hint"]


def test_pages_cover_every_run_once_newest_first(served: ServerUnderTest) -> None:
    ids = [served.project.run().run_id for _ in range(5)]
    pages = _pages(served, limit=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    flat = [run_id for page in pages for run_id in page]
    assert flat == sorted(ids, reverse=True)


def test_filters_by_branch_status_commit_and_pipeline(served: ServerUnderTest) -> None:
    project = served.project
    on_main = project.run().run_id
    project.git("checkout", "-q", "-b", "feature")
    (project.root / "note.txt").write_text("x")
    project.git("add", "note.txt")
    project.git("commit", "-q", "-m", "feature work")
    on_feature = project.run().run_id
    sha = project.git("rev-parse", "HEAD").strip()
    assert _pages(served, branch="feature") == [[on_feature]]
    assert _pages(served, commit=sha[:7]) == [[on_feature]]
    assert _pages(served, commit=sha[:7].upper()) == [[on_feature]]
    assert _pages(served, status="success", limit=1) == [[on_feature], [on_main]]
    assert _pages(served, status="failed") == [[]]
    assert _pages(served, pipeline="demo", branch="feature") == [[on_feature]]
    bad = served.client.get(
        "/api/v1/runs", params={"status": "nope"}, headers=served.as_user(VIEWER)
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid"
    bad_cursor = served.client.get(
        "/api/v1/runs", params={"cursor": "zzz"}, headers=served.as_user(VIEWER)
    )
    assert bad_cursor.status_code == 400


LOG_SPEC = """\
version: 1
name: logs
jobs:
  chatty:
    run: "for i in $(seq 1 200); do echo line-$i; done"
"""


@pytest.fixture
def chatty(make_server: object) -> tuple[ServerUnderTest, int, bytes]:
    served = make_server(LOG_SPEC)  # type: ignore[operator]
    run_id = served.project.run().run_id
    whole = served.client.get(
        f"/api/v1/runs/{run_id}/jobs/chatty/log",
        params={"length": 1_000_000},
        headers=served.as_user(VIEWER),
    )
    assert whole.status_code == 200 and whole.headers["X-Log-Finished"] == "true"
    assert int(whole.headers["X-Log-Size"]) == len(whole.content)
    assert b"line-200" in whole.content
    return served, run_id, whole.content


def test_log_ranges_by_offset_tail_and_range_header(
    chatty: tuple[ServerUnderTest, int, bytes],
) -> None:
    served, run_id, whole = chatty
    url = f"/api/v1/runs/{run_id}/jobs/chatty/log"
    viewer = served.as_user(VIEWER)
    piece = served.client.get(url, params={"offset": 10, "length": 25}, headers=viewer)
    assert piece.content == whole[10:35] and piece.headers["X-Log-Offset"] == "10"
    tail = served.client.get(url, params={"tail": 30}, headers=viewer)
    assert tail.content == whole[-30:]
    ranged = served.client.get(url, headers={**viewer, "Range": "bytes=5-14"})
    assert ranged.status_code == 206 and ranged.content == whole[5:15]
    assert ranged.headers["Content-Range"] == f"bytes 5-14/{len(whole)}"
    suffix = served.client.get(url, headers={**viewer, "Range": "bytes=-20"})
    assert suffix.status_code == 206 and suffix.content == whole[-20:]
    beyond = served.client.get(url, headers={**viewer, "Range": f"bytes={len(whole) + 5}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole)}"
    by_name = served.client.get(url, params={"tail": 9}, headers=viewer)
    assert by_name.content == whole[-9:]


def test_a_big_log_answers_a_range_without_reading_it_whole(
    chatty: tuple[ServerUnderTest, int, bytes],
) -> None:
    served, run_id, _ = chatty
    with served.project.store() as store:
        blob = store.get_job(run_id, "chatty").log_blob
        assert blob is not None
        path = store.blobs.path(blob)
    line = b"0.5\tstdout\t" + b"x" * 89 + b"\n"
    big = line * (50 * 1024 * 1024 // len(line))
    path.chmod(0o600)
    path.write_bytes(big)
    url = f"/api/v1/runs/{run_id}/jobs/chatty/log"
    tail = served.client.get(url, params={"tail": 4096}, headers=served.as_user(VIEWER))
    assert tail.content == big[-4096:] and int(tail.headers["X-Log-Size"]) == len(big)
    assert tail.elapsed.total_seconds() < 0.5
    middle = served.client.get(
        url, headers={**served.as_user(VIEWER), "Range": "bytes=25000000-25000099"}
    )
    assert middle.content == big[25_000_000:25_000_100]
    assert json.dumps(middle.headers["Content-Range"]).startswith('"bytes 25000000-')


def _bulk_runs(served: ServerUnderTest, count: int) -> dict[int, tuple[str, str]]:
    """`count` runs inserted at once (branch and state vary); id -> (branch, state)."""
    import sqlalchemy as sa

    from conveyor.store.db import write_transaction
    from conveyor.store.schema import runs

    rows: list[dict[str, object]] = [
        {
            "pipeline": "demo",
            "state": "failed" if n % 3 == 0 else "success",
            "commit_sha": f"{n:040x}",
            "branch": f"b{n % 4}",
            "trigger": {},
            "started_at": 1_700_000_000.0 + n,
        }
        for n in range(count)
    ]
    with write_transaction(served.context.store.engine) as conn:
        conn.execute(sa.insert(runs), rows)
        found = conn.execute(sa.select(runs.c.id, runs.c.branch, runs.c.state)).all()
    return {row.id: (row.branch, row.state) for row in found}


def test_many_pages_with_and_without_filters_have_no_gaps_or_repeats(
    served: ServerUnderTest,
) -> None:
    recorded = _bulk_runs(served, 450)
    every = [run_id for page in _pages(served, limit=200) for run_id in page]
    assert every == sorted(recorded, reverse=True)
    on_b1 = [run_id for page in _pages(served, branch="b1", limit=7) for run_id in page]
    assert on_b1 == sorted((i for i, (b, _) in recorded.items() if b == "b1"), reverse=True)
    failed_b2 = [
        run_id for page in _pages(served, branch="b2", status="failed", limit=9) for run_id in page
    ]
    expected = [i for i, (b, s) in recorded.items() if b == "b2" and s == "failed"]
    assert failed_b2 == sorted(expected, reverse=True) and failed_b2
    too_many = served.client.get(
        "/api/v1/runs", params={"limit": 500}, headers=served.as_user(VIEWER)
    )
    assert too_many.status_code == 422
    default = served.client.get("/api/v1/runs", headers=served.as_user(VIEWER)).json()
    assert len(default["items"]) == 50 and default["next_cursor"]
