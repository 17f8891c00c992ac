"""The exported Prometheus rules: checked by the real promtool, and unit-tested with
`promtool test rules` on input series where a fast burn pages at the right second, the
short window resets it, and the ticket never fires."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conveyor.observe.rules import prometheus_duration, rules_document
from conveyor.spec.environments import Environment
from conveyor.spec.slo import Slo, SloKind

# time_scale 60: the page windows are 1m and 5s, the ticket's 72m and 6m.
AVAILABILITY = Slo(kind=SloKind.AVAILABILITY, objective=99.0, time_scale=60)
LATENCY = Slo(name="fast", kind=SloKind.LATENCY, threshold=0.25, objective=99.5)
PAGE_LABELS = {
    "alertname": "ErrorBudgetBurn",
    "severity": "page",
    "slo": "availability",
    "environment": "production",
    "long": "1m",
    "short": "5s",
}
PAGE_ANNOTATIONS = {
    "summary": "production: availability burns its error budget faster than 14.4x over 1m and 5s",
    "objective": "99%",
}
# Two releases at 5 req/s each, 20 minutes of clean traffic, then r2 fails 5 req/s
# for 20 s (100 bad requests).
T0 = 1200
SERIES = [
    ('conveyor_release_requests_total{environment="production",release="r1"}', "0+5x1400"),
    ('conveyor_release_requests_total{environment="production",release="r2"}', "0+5x1400"),
    (
        'conveyor_release_responses_total{environment="production",release="r2",code="5xx"}',
        f"0x{T0} 5+5x19 100x150",
    ),
    # r1's latency: 9 requests in 10 within 250 ms
    (
        'conveyor_release_request_duration_seconds_bucket{environment="production",release="r1",le="0.25"}',
        "0+9x1400",
    ),
    (
        'conveyor_release_request_duration_seconds_count{environment="production",release="r1"}',
        "0+10x1400",
    ),
]


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is required: apt-get install -y prometheus"
    return found


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def write_rules(tmp_path: Path, *slos: Slo) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(rules_document({"production": Environment(slos=list(slos))}))
    return path


def alert_at(seconds: int, *alerts: dict[str, str]) -> dict[str, Any]:
    expected = [
        {
            "exp_labels": {k: v for k, v in labels.items() if k != "alertname"},
            "exp_annotations": PAGE_ANNOTATIONS,
        }
        for labels in alerts
    ]
    return {"eval_time": f"{seconds}s", "alertname": "ErrorBudgetBurn", "exp_alerts": expected}


def sample_at(seconds: int, series: str, value: float, slo: str = "availability") -> dict[str, Any]:
    """The recorded series of `slo`, in millionths (promtool compares floats exactly)."""
    return {
        "expr": f'round({series}{{slo="{slo}"}} * 1e6)',
        "eval_time": f"{seconds}s",
        "exp_samples": [
            {"labels": f'{{environment="production",slo="{slo}"}}', "value": round(value * 1e6)}
        ],
    }


@pytest.mark.real
def test_the_rules_pass_promtool_check(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, AVAILABILITY, LATENCY)
    checked = run_promtool("check", "rules", str(rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # 7 rules per SLO: 5 windows + the rolling one, the budget; plus 3 alerts each
    assert "SUCCESS: 20 rules found" in checked.stdout


@pytest.mark.real
def test_promtool_pages_on_a_fast_burn_and_never_tickets(tmp_path: Path) -> None:
    # a latency SLO beside it: 1 request in 10 over 250 ms, against a lax objective of 50 %
    lax = Slo(name="fast", kind=SloKind.LATENCY, threshold=0.25, objective=50, time_scale=60)
    write_rules(tmp_path, AVAILABILITY, lax)
    case = {
        "interval": "1s",
        "input_series": [{"series": series, "values": values} for series, values in SERIES],
        "alert_rule_test": [
            alert_at(T0 + 5),  # 25 bad of 600 over the minute: 4 %, not yet 14.4 %
            alert_at(T0 + 17),  # 85 of 600: 14.2 %
            alert_at(T0 + 18, PAGE_LABELS),  # 90 of 600: 15 % over 1m, 100 % over 5s: page
            alert_at(T0 + 20, PAGE_LABELS),
            # The errors stopped at T0 + 20: the minute still burns (100 of 600), but the 5s
            # window is clean again, so the page resets; the 6m and 72m windows never
            # burn enough for the slower page or the ticket.
            alert_at(T0 + 30),
            alert_at(T0 + 120),
        ],
        "promql_expr_test": [
            sample_at(T0 + 30, "conveyor_slo:error_ratio:rate1m", 100 / 600),
            sample_at(T0 + 30, "conveyor_slo:error_ratio:rate5s", 0.0),
            # the rolling window (28d / 60 = 11h12m) holds every request so far
            sample_at(
                T0 + 30, "conveyor_slo:error_budget_remaining", 1 - 100 / (10 * (T0 + 30)) / 0.01
            ),
            sample_at(T0 + 30, "conveyor_slo:error_ratio:rate1m", 0.1, slo="fast"),
            sample_at(T0 + 30, "conveyor_slo:error_budget_remaining", 1 - 0.1 / 0.5, slo="fast"),
        ],
    }
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1s", "tests": [case]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(tests, sort_keys=False))

    tested = run_promtool("test", "rules", "test.yml", cwd=tmp_path)

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_rules_read_the_series_conveyor_exposes() -> None:
    groups = yaml.safe_load(rules_document({"production": Environment(slos=[LATENCY])}))
    [group] = groups["groups"]
    by_name = {rule.get("record") or rule["alert"]: rule for rule in group["rules"]}
    hour = by_name["conveyor_slo:error_ratio:rate1h"]["expr"]
    assert (
        'conveyor_release_request_duration_seconds_bucket{environment="production",le="0.25"}'
        in hour
    )
    assert 'conveyor_release_request_duration_seconds_count{environment="production"}' in hour
    alerts = [rule for rule in group["rules"] if "alert" in rule]
    assert [
        (a["labels"]["severity"], a["labels"]["long"], a["labels"]["short"]) for a in alerts
    ] == [
        ("page", "1h", "5m"),
        ("page", "6h", "30m"),
        ("ticket", "3d", "6h"),
    ]
    assert alerts[0]["expr"] == (
        'conveyor_slo:error_ratio:rate1h{environment="production",slo="fast"} > (14.4 * 0.005)'
        ' and conveyor_slo:error_ratio:rate5m{environment="production",slo="fast"} > (14.4 * 0.005)'
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3600, "1h"), (300 / 3600, "83ms"), (72 * 60, "1h12m"), (28 * 86400, "28d"), (1e-6, "1ms")],
)
def test_prometheus_durations(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text
