"""The runs pages, served for real: the list (filters, keyset pages), a run's page (job
graph as SVG, jobs with timings, cache hits and reasons) and hostile text escaped."""

from __future__ import annotations

import re

from server.conftest import MakeServer, ServerUnderTest

DIAMOND = """\
version: 1
name: diamond
jobs:
  build:
    run: echo built
  unit:
    needs: [build]
    run: echo unit
  lint:
    needs: [build]
    run: echo lint
  package:
    needs: [unit, lint]
    run: echo packaged
"""


def test_the_runs_pages_need_a_login(served: ServerUnderTest) -> None:
    served.project.run()
    for path in ("/runs", "/runs/1", "/runs/1/jobs/build/log", "/runs/1/jobs/build/log.txt"):
        assert served.client.get(path).status_code == 401, path


def test_the_runs_list_shows_each_run_newest_first_and_filters(served: ServerUnderTest) -> None:
    served.project.run()
    served.project.commit(message="second change")
    served.project.run()
    viewer = served.as_user("viewer")

    page = served.client.get("/runs", headers=viewer)

    assert page.status_code == 200
    rows = re.findall(r'<tr data-run="(\d+)">', page.text)
    assert rows == ["2", "1"]
    assert "second change" in page.text and "state-success" in page.text
    assert "manual" in page.text  # the trigger
    sha = served.project.git("rev-parse", "HEAD")
    assert sha[:10] in page.text
    by_commit = served.client.get(f"/runs?commit={sha[:7]}", headers=viewer).text
    assert re.findall(r'<tr data-run="(\d+)">', by_commit) == ["2"]
    failed = served.client.get("/runs?status=failed", headers=viewer).text
    assert "No runs match." in failed
    other = served.client.get("/runs?branch=nope", headers=viewer).text
    assert "No runs match." in other
    assert served.client.get("/runs?status=bogus", headers=viewer).status_code == 400


def test_the_runs_list_pages_by_id_with_older_and_newer_links(served: ServerUnderTest) -> None:
    for _ in range(5):
        served.project.run()
    viewer = served.as_user("viewer")

    first = served.client.get("/runs?limit=2", headers=viewer).text
    assert re.findall(r'<tr data-run="(\d+)">', first) == ["5", "4"]
    assert "newer" not in first.split('<nav class="pager">')[1]
    older = re.search(r'class="older" href="([^"]+)"', first)
    assert older is not None
    second = served.client.get(older.group(1).replace("&amp;", "&"), headers=viewer).text
    assert re.findall(r'<tr data-run="(\d+)">', second) == ["3", "2"]
    newer = re.search(r'class="newer" href="([^"]+)"', second)
    assert newer is not None
    back = served.client.get(newer.group(1).replace("&amp;", "&"), headers=viewer).text
    assert re.findall(r'<tr data-run="(\d+)">', back) == ["5", "4"]


def test_a_run_page_draws_the_job_graph_and_lists_the_jobs(make_server: MakeServer) -> None:
    served = make_server(DIAMOND)
    served.project.run()
    again = served.project.run()  # every job from the cache the second time

    page = served.client.get(f"/runs/{again.run_id}", headers=served.as_user("viewer"))

    assert page.status_code == 200
    nodes = {
        job: state
        for state, job in re.findall(r'class="node state-(\w+)" data-job="(\w+)"', page.text)
    }
    assert nodes == dict.fromkeys(("build", "unit", "lint", "package"), "cached")
    positions = {
        job: int(x)
        for job, x in re.findall(r'data-job="(\w+)" transform="translate\((\d+),', page.text)
    }
    assert positions["build"] < positions["unit"] == positions["lint"] < positions["package"]
    assert len(re.findall(r'<path class="edge"', page.text)) == 4
    assert f'href="/runs/{again.run_id}/jobs/package/log"' in page.text
    assert "state-cached" in page.text and ">hit<" in page.text
    assert "4 from the cache" in page.text


def test_a_run_page_says_why_a_job_ran_or_was_skipped(make_server: MakeServer) -> None:
    served = make_server(DIAMOND)
    first = served.project.run()
    page = served.client.get(f"/runs/{first.run_id}", headers=served.as_user("viewer")).text
    rows = re.findall(r'<tr data-job="(\w+)">.*?<td class="why">([^<]*)</td>', page, re.S)
    assert rows and all(why.strip() for _, why in rows)  # each job says why it ran


def test_an_unknown_run_is_404(served: ServerUnderTest) -> None:
    assert served.client.get("/runs/99", headers=served.as_user("viewer")).status_code == 404


def test_hostile_commit_messages_and_branch_names_are_escaped(served: ServerUnderTest) -> None:
    branch = 'x"><svg/onload=alert(1)>'
    served.project.git("checkout", "-q", "-b", branch)
    served.project.commit(message="<script>alert('message')</script>")
    run = served.project.run()
    viewer = served.as_user("viewer")

    for path in ("/runs", f"/runs/{run.run_id}", f"/runs?branch={branch}"):
        text = served.client.get(path, headers=viewer).text
        assert "<script>alert" not in text and "<svg/onload" not in text, path
        assert "&lt;script&gt;alert(" in text or "&lt;svg/onload" in text, path
    listed = served.client.get("/runs", headers=viewer).text
    assert "&#34;&gt;&lt;svg/onload=alert(1)&gt;" in listed  # the branch, shown, escaped
