"""The environment, release, approval, flag and audit pages over real data in the store,
through a real server (no browser: tests/server/test_ui_browser.py clicks)."""

from __future__ import annotations

import html
import time
from datetime import UTC, datetime

import pytest

from conveyor.approvals.users import add_user, issue_token
from conveyor.flags.store import FlagLedger
from conveyor.states import DeployState
from conveyor.store.records import EventKind
from server.conftest import MakeServer, ServerUnderTest
from server.ui_data import (
    NEW,
    SPEC,
    put_image_with_sbom,
    record_canary,
    request_production,
    waiting_run,
)

AUTHOR = "Ada Lovelace <ada@example.org>"  # tests/conftest.py's GIT_ENV writes every commit


@pytest.fixture
def shop(make_server: MakeServer) -> ServerUnderTest:
    return make_server(SPEC)


def get(served: ServerUnderTest, path: str, user: str = "viewer") -> str:
    response = served.client.get(path, headers=served.as_user(user))
    assert response.status_code == 200, response.text
    return response.text


def test_environments_list_their_live_release_and_weights(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_canary(shop.context.store, monkeypatch, time.time() - 400)
    page = get(shop, "/environments")
    assert 'data-environment="staging"' in page and 'data-environment="production"' in page
    staging = page.split('data-environment="staging"')[1].split("</section>")[0]
    assert NEW in staging and "100 %" in staging and "serving" in staging
    production = page.split('data-environment="production"')[1].split("</section>")[0]
    assert "never deployed" in production and "approval required" in production


def test_an_environment_page_charts_its_signals_and_tells_its_history(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = record_canary(shop.context.store, monkeypatch, time.time() - 400)
    page = get(shop, "/environments/staging")
    assert page.count("<svg") == 3  # requests, errors, p95
    assert "Requests per second" in page and "<polyline" in page
    history = page.split('class="history"')[1]
    assert f"/environments/staging/releases/{recorded.canary_deploy}" in history
    assert history.count(">succeeded<") == 2


def test_a_canary_page_shows_steps_weights_evidence_and_decision(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = record_canary(shop.context.store, monkeypatch, time.time() - 400)
    page = get(shop, f"/environments/staging/releases/{recorded.canary_deploy}")
    steps = page.split('class="steps"')[1].split("</table>")[0]
    assert steps.count("<tr>") == 5  # the header and four steps
    assert "weight: 10" in steps and "weight: 50" in steps
    verdicts = page.split('class="verdicts"')[1].split("</main>")[0]
    assert verdicts.count('class="verdict-promote"') == 2
    assert verdicts.count('class="verdict-continue"') == 14
    assert "errors.e_promote" in verdicts and "errors.confidence_sequence.high" in verdicts
    assert "succeeded" in page.split('id="decision"')[1]
    assert "a 2x error regression would have been caught" in page
    assert "Traffic weights" in page and "e-values" in page
    assert 'data-live-topic="environment:staging"' in page


def test_a_release_record_is_served_as_text(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = record_canary(shop.context.store, monkeypatch, time.time() - 400)
    path = f"/environments/staging/releases/{recorded.canary_deploy}/record.md"
    response = shop.client.get(path, headers=shop.as_user("viewer"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(f"# Release {NEW} to staging")
    assert "**Previous release:** shop-v1" in response.text


def test_an_unknown_environment_or_deploy_is_404(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = record_canary(shop.context.store, monkeypatch, time.time() - 400)
    viewer = shop.as_user("viewer")
    assert shop.client.get("/environments/nowhere", headers=viewer).status_code == 404
    wrong = f"/environments/production/releases/{recorded.canary_deploy}"
    assert shop.client.get(wrong, headers=viewer).status_code == 404


def test_every_page_needs_a_login(shop: ServerUnderTest) -> None:
    for path in (
        "/environments",
        "/environments/staging",
        "/approvals",
        "/flags",
        "/flags/staging",
        "/audit",
        "/environments/staging/diff",
    ):
        assert shop.client.get(path).status_code == 401, path


def test_the_diff_between_two_releases_shows_image_and_flags_in_between(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = time.time() - 400
    recorded = record_canary(shop.context.store, monkeypatch, start)
    page = get(
        shop,
        f"/environments/staging/diff?from={recorded.first_deploy}&to={recorded.canary_deploy}",
    )
    configuration = page.split('id="configuration"')[1].split("</table>")[0]
    assert "shop@sha256:1111" in configuration and "shop@sha256:2222" in configuration
    assert "is not in the image store" in page  # no SBOM to read: said, not failed
    note = page.split("<h2>Commits</h2>")[1].split("</ul>")[0]
    assert f"#{recorded.canary_deploy} came from no run with a commit" in note


def approval_setup(shop: ServerUnderTest) -> int:
    store = shop.context.store
    run_id = waiting_run(store, shop.project.git("rev-parse", "HEAD"), AUTHOR)
    request_production(store, run_id, shop.project.root)
    add_user(shop.context.users_file, "ada", "ada@example.org", ["reviewer"], [])
    shop.tokens["ada"] = issue_token(shop.context.users_file, "ada", None, datetime.now(UTC)).token
    return run_id


def test_the_inbox_shows_the_change_and_sorts_what_waits_for_me(shop: ServerUnderTest) -> None:
    run_id = approval_setup(shop)
    mine = get(shop, "/approvals", "reviewer")
    waiting = mine.split('id="waiting"')[1].split("</div>")[0]
    assert f'data-run="{run_id}"' in waiting and "first" in waiting  # the commit's subject
    assert AUTHOR.replace("<", "&lt;").replace(">", "&gt;") in waiting
    authors = get(shop, "/approvals", "ada")
    assert "Nothing waits for you" in authors
    assert "ada wrote the change" in authors.split('id="others"')[1]


def test_an_xss_attempt_in_a_comment_is_shown_as_text(shop: ServerUnderTest) -> None:
    run_id = approval_setup(shop)
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    response = shop.client.post(
        "/approvals/decide",
        headers=shop.as_user("reviewer"),
        data={
            "run_id": run_id,
            "environment": "production",
            "verdict": "approve",
            "comment": attack,
        },
    )
    assert response.status_code == 200, response.text
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert html.escape(attack, quote=False) in response.text.replace("&#34;", '"').replace(
        "&#39;", "'"
    )


def test_the_author_is_refused_and_the_refusal_recorded(shop: ServerUnderTest) -> None:
    run_id = approval_setup(shop)
    response = shop.client.post(
        "/approvals/decide",
        headers=shop.as_user("ada"),
        data={"run_id": run_id, "environment": "production", "verdict": "approve"},
    )
    assert response.status_code == 403
    assert "ada wrote the change" in response.text.split('id="outcome"')[1]
    refused = [e for e in shop.context.store.events() if e.kind == EventKind.APPROVAL_REFUSED]
    assert len(refused) == 1 and refused[0].data["code"] == "author"


def test_a_viewer_cannot_decide_nor_change_flags(shop: ServerUnderTest) -> None:
    run_id = approval_setup(shop)
    FlagLedger(shop.context.store.engine).set_enabled("staging", "banner", True, actor="x")
    viewer = shop.as_user("viewer")
    decision = {"run_id": run_id, "environment": "production", "verdict": "approve"}
    assert shop.client.post("/approvals/decide", headers=viewer, data=decision).status_code == 403
    kill = shop.client.post("/flags/staging/banner/kill", headers=viewer, data={"confirm": "yes"})
    assert kill.status_code == 403
    assert FlagLedger(shop.context.store.engine).flag("staging", "banner").flag.enabled


def test_flags_toggle_roll_out_and_kill_only_when_confirmed(shop: ServerUnderTest) -> None:
    ledger = FlagLedger(shop.context.store.engine)
    ledger.set_enabled("staging", "new-banner", False, actor="someone")
    developer = shop.as_user("developer")
    on = shop.client.post(
        "/flags/staging/new-banner/enabled", headers=developer, data={"enabled": "true"}
    )
    assert on.status_code == 303 and on.headers["location"] == "/flags/staging"
    assert ledger.flag("staging", "new-banner").flag.enabled
    shop.client.post(
        "/flags/staging/new-banner/rollout", headers=developer, data={"percentage": "25"}
    )
    page = get(shop, "/flags/staging")
    assert 'value="25"' in page
    unconfirmed = shop.client.post(
        "/flags/staging/new-banner/kill", headers=developer, data={"reason": "5xx"}
    )
    assert unconfirmed.status_code == 400 and "I understand" in unconfirmed.text
    assert ledger.flag("staging", "new-banner").flag.enabled
    history = [e.data["change"] for e in ledger.history("staging", "new-banner")]
    assert history == ["disabled", "enabled", "rollout"]
    assert all(e.actor == "developer" for e in ledger.history("staging", "new-banner")[1:])


def test_the_audit_page_says_the_chain_verifies(
    shop: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_canary(shop.context.store, monkeypatch, time.time() - 400)
    FlagLedger(shop.context.store.engine).set_enabled("staging", "banner", True, actor="x")
    page = get(shop, "/audit")
    assert "The chain verifies" in page.split('id="chain-state"')[1]
    assert "flag.changed" in page


def deploy_from_run(shop: ServerUnderTest, run_id: int, release: str, digest: str) -> int:
    ledger = shop.context.store.ledger
    ledger.environments.ensure("staging", 18080, 18081)
    began = ledger.deploys.begin(
        "staging",
        release_id=release,
        repository="shop",
        digest=digest,
        ports=[18090],
        previous=None,
        actor="developer",
        run_id=run_id,
    )
    ledger.deploys.finish(began.id, DeployState.SUCCEEDED, None)
    return began.id


def test_the_diff_lists_the_commits_and_flag_changes_between_two_runs_deploys(
    shop: ServerUnderTest,
) -> None:
    store = shop.context.store
    first = waiting_run(store, shop.project.git("rev-parse", "HEAD"), AUTHOR)
    before = deploy_from_run(shop, first, "shop-v1", "sha256:" + "1" * 64)
    FlagLedger(store.engine).set_enabled("staging", "checkout-v2", True, actor="developer")
    shop.project.commit({"app.py": "print('v2')\n"}, "faster checkout")
    shop.project.commit({"app.py": "print('v3')\n"}, "fix the <b>basket</b>")
    second = waiting_run(store, shop.project.git("rev-parse", "HEAD"), AUTHOR)
    after = deploy_from_run(shop, second, "shop-v2", "sha256:" + "2" * 64)
    page = get(shop, f"/environments/staging/diff?from={before}&to={after}")
    commits = page.split('class="commits"')[1].split("</ul>")[0]
    assert "faster checkout" in commits and "fix the &lt;b&gt;basket&lt;/b&gt;" in commits
    assert commits.count("<li>") == 2  # not the first commit, deployed before
    assert "checkout-v2" in page.split('id="flags"')[1].split("</table>")[0]
    selects = page.split("<select")
    assert f'<option value="{before}" selected>' in selects[1]
    assert f'<option value="{after}" selected>' in selects[2]


def test_a_browser_session_decides_as_the_users_file_entry_of_its_name(
    shop: ServerUnderTest,
) -> None:
    from conveyor.approvals.users import Authenticated, NotAuthenticated
    from conveyor.server.auth import Principal, approval_identity

    session = Principal(name="reviewer", roles=frozenset({"reviewer"}), via="session")
    found = approval_identity(shop.context, session)
    assert isinstance(found, Authenticated)
    assert (found.user.email, found.token_id) == ("reviewer@example.org", "session")
    stranger = Principal(name="mallory", roles=frozenset({"reviewer"}), via="session")
    refused = approval_identity(shop.context, stranger)
    assert isinstance(refused, NotAuthenticated)
    assert "not in the users file" in refused.refused.reason


def test_a_flag_kill_shows_in_the_environment_history(shop: ServerUnderTest) -> None:
    ledger = FlagLedger(shop.context.store.engine)
    ledger.set_enabled("staging", "new-banner", True, actor="someone")
    shop.client.post(
        "/flags/staging/new-banner/kill",
        headers=shop.as_user("developer"),
        data={"confirm": "yes", "reason": "5xx <everywhere>"},
    )
    history = get(shop, "/environments/staging").split('class="history"')[1]
    assert "flag-kill" in history and "flag:new-banner" in history
    assert "5xx &lt;everywhere&gt;" in history and "developer" in history


def test_a_chart_escapes_its_labels_and_skips_values_that_are_not_finite() -> None:
    from conveyor.server.ui.charts import line_chart

    drawn = str(line_chart("<b>t</b>", {"<script>x</script>": [(1.0, 1.0), (2.0, float("inf"))]}))
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn and "&lt;b&gt;" in drawn
    assert "inf" not in drawn.replace("<title>", "")
    assert "no samples yet" in str(line_chart("empty", {"a": []}))


def test_the_audit_page_says_when_an_entry_was_rewritten(shop: ServerUnderTest) -> None:
    import sqlalchemy as sa

    ledger = FlagLedger(shop.context.store.engine)
    ledger.set_enabled("staging", "banner", True, actor="developer")
    event_id = ledger.history("staging", "banner")[-1].id
    with shop.context.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE events SET actor = 'nobody' WHERE id = :id"), {"id": event_id})
    page = get(shop, "/audit")
    state = page.split('id="chain-state"')[1].split("</div>")[0]
    assert "does not verify" in state and "<li>" in state


def test_the_diff_compares_the_images_configuration_and_sbom_packages(
    shop: ServerUnderTest,
) -> None:
    project = shop.context.project
    old = put_image_with_sbom(
        project,
        "v1",
        ["MODE=slow", "PORT=8000"],
        [("flask", "2.3.0"), ("requests", "2.31.0")],
        ["PYSEC-2023-62", "GHSA-aaaa"],
    )
    new = put_image_with_sbom(
        project,
        "v2",
        ["MODE=fast", "PORT=8000"],
        [("flask", "3.0.0"), ("requests", "2.31.0"), ("urllib3", "2.0.0")],
        ["GHSA-aaaa", "GHSA-bbbb"],
    )
    store = shop.context.store
    first = waiting_run(store, shop.project.git("rev-parse", "HEAD"), AUTHOR)
    second = waiting_run(store, shop.project.git("rev-parse", "HEAD"), AUTHOR)
    before = deploy_from_run(shop, first, "shop-v1", old)
    after = deploy_from_run(shop, second, "shop-v2", new)
    page = get(shop, f"/environments/staging/diff?from={before}&to={after}")
    configuration = page.split('id="configuration"')[1].split("</table>")[0]
    assert "<td>Env.MODE</td>" in configuration
    assert "slow" in configuration and "fast" in configuration
    assert "PORT" not in configuration  # unchanged keys are left out
    packages = page.split('id="packages"')[1].split("</ul>")[0]
    assert "+ flask 3.0.0" in packages and "- flask 2.3.0" in packages
    assert "+ urllib3 2.0.0" in packages
    assert "requests" not in packages
    vulnerabilities = page.split('id="vulnerabilities"')[1].split("</ul>")[0]
    assert "new: GHSA-bbbb" in vulnerabilities
    assert "fixed: PYSEC-2023-62" in vulnerabilities
    assert "aaaa" not in vulnerabilities


def test_signal_series_keep_a_few_hundred_windows_whatever_the_sample_rate(
    shop: ServerUnderTest,
) -> None:
    from conveyor.service.release_timeline import signal_series
    from conveyor.store.ledger import SampleRow

    start = time.time() - 3600
    rows = [
        SampleRow(
            "staging",
            "shop-v1",
            start + second,
            100,
            {
                "release_id": "shop-v1",
                "requests": 20 * second,
                "responses_4xx": 0,
                "responses_5xx": second // 5,  # 1 % of 20 req/s
                "connect_failures": 0,
                "latency_buckets": {"0.1": 20 * second, "inf": 20 * second},
                "latency_sum": 0.05 * 20 * second,
            },
            None,
        )
        for second in range(3600)  # a sample a second for an hour
    ]
    shop.context.store.ledger.samples.add(rows)
    windows = signal_series(shop.context.store, "staging", since=start - 1)["shop-v1"]
    assert len(windows) == 240
    assert windows[0].start == start and windows[-1].end == start + 3599
    assert all(w.requests_per_second == pytest.approx(20.0) for w in windows)
    assert all(w.rate_5xx == pytest.approx(0.01, abs=0.003) for w in windows)


def test_an_hour_of_samples_a_second_is_read_in_a_few_hundred_rows(
    shop: ServerUnderTest,
) -> None:
    """The page reads ids first, then only the rows it draws."""
    from conveyor.store.ledger import SampleRow

    start = time.time() - 3600
    rows = [
        SampleRow("staging", release, start + second, 50, {"requests": second}, None)
        for second in range(3600)
        for release in ("shop-v1", "shop-v2")
    ]
    shop.context.store.ledger.samples.add(rows)
    spread = shop.context.store.ledger.samples.spread("staging", start, 100)
    per_release = {r: [s.ts for s in spread if s.release_id == r] for r in ("shop-v1", "shop-v2")}
    for times in per_release.values():
        assert len(times) == 100 and times == sorted(times)
        assert times[0] == start and times[-1] == start + 3599
