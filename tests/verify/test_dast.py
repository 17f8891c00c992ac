"""DAST reports into findings: wapiti's and schemathesis's real output (captured once, see
tests/verify/data/README.md), the passive header checks, and the identity of a finding
across deploys (fingerprints, exceptions)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pydantic
import pytest

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.step import ToolRun
from conveyor.engine.tool_output import ScanFailed
from conveyor.findings.exceptions import load_exceptions
from conveyor.findings.model import Category, Disposition, Finding, Level
from conveyor.states import FailureClass
from conveyor.steps.dast import DastParams
from conveyor.verify.dast import GarbledReport, PathTemplates, relative_path
from conveyor.verify.dast.passive import check_response, scan_passive
from conveyor.verify.dast.schemathesis import read_failures, read_run_summary
from conveyor.verify.dast.wapiti import read_wapiti_report, session_locked
from conveyor.verify.target import Target
from deploy.apps import free_port

DATA = Path(__file__).parent / "data"
PLANTED_URL = "http://127.0.0.1:18732"
SHOP_TEMPLATES = PathTemplates(
    ["/api/products", "/api/products/{product_id}", "/api/search", "/healthz", "/version"]
)
SHOP_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def wapiti_report(name: str) -> dict[str, Any]:
    return dict(json.loads((DATA / name).read_text()))


def by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = {}
    for finding in findings:
        grouped.setdefault(finding.rule_id, []).append(finding)
    return grouped


def response(
    url: str, headers: dict[str, str] | list[tuple[str, str]] | None = None
) -> httpx.Response:
    return httpx.Response(200, headers=headers or {}, request=httpx.Request("GET", url))


# --- wapiti -----------------------------------------------------------------------------


def test_wapiti_sql_injection_names_method_path_parameter_and_how_to_reproduce() -> None:
    version, pages, findings = read_wapiti_report(
        wapiti_report("wapiti-planted-injection.json"), PLANTED_URL, SHOP_TEMPLATES
    )
    assert (version, pages) == ("3.2.3", 9)
    [injection] = by_rule(findings)["sql-injection"]
    assert injection.level is Level.ERROR
    assert injection.category is Category.DAST
    assert injection.tool == "wapiti"
    assert injection.path == "api/search"
    assert injection.properties["method"] == "GET"
    assert injection.properties["parameter"] == "q"
    assert injection.rule_name == "SQL Injection"
    assert injection.message.startswith(
        "GET /api/search (parameter q): SQL Injection (DBMS: SQLite)"
    )
    assert "reproduce: curl" in injection.message
    assert injection.help_uri is not None and injection.help_uri.startswith("https://")


def test_wapiti_anomalies_are_warnings_once_per_parameter_and_additionals_notes() -> None:
    _, _, findings = read_wapiti_report(
        wapiti_report("wapiti-planted-injection.json"), PLANTED_URL, SHOP_TEMPLATES
    )
    rules = by_rule(findings)
    # Two modules (exec, file) each saw a 500 on q: one finding.
    [crash] = rules["internal-server-error"]
    assert (crash.level, crash.path, crash.properties["parameter"]) == (
        Level.WARNING,
        "api/search",
        "q",
    )
    methods = rules["http-methods"]
    assert {f.level for f in methods} == {Level.NOTE}
    # A concrete product URL is reported under its OpenAPI template; the base URL is "/".
    assert {f.path for f in methods} == {
        "/",
        "api/products",
        "api/products/{product_id}",
        "api/search",
        "healthz",
        "version",
    }


def test_wapiti_low_level_vulnerabilities_are_notes() -> None:
    _, _, findings = read_wapiti_report(
        wapiti_report("wapiti-no-security-headers.json"), "http://127.0.0.1:18731", PathTemplates()
    )
    levels = {f.rule_id: f.level for f in findings if f.properties["wapiti_level"] == 1}
    assert levels == {
        "content-security-policy-configuration": Level.NOTE,
        "clickjacking-protection": Level.NOTE,
        "mime-type-confusion": Level.NOTE,
    }


def test_a_finding_keeps_its_fingerprint_on_another_port_with_another_payload() -> None:
    report = wapiti_report("wapiti-planted-injection.json")
    moved = json.loads(
        json.dumps(report).replace("127.0.0.1:18732", "10.0.0.9:41001").replace("%27", "%22")
    )
    _, _, here = read_wapiti_report(report, PLANTED_URL, SHOP_TEMPLATES)
    _, _, there = read_wapiti_report(moved, "http://10.0.0.9:41001", SHOP_TEMPLATES)
    assert [f.message for f in here] != [f.message for f in there]
    assert [f.fingerprint for f in here] == [f.fingerprint for f in there]
    assert len({f.fingerprint for f in here}) == len(here)  # and they tell findings apart


def test_a_finding_on_another_parameter_is_another_finding() -> None:
    report = wapiti_report("wapiti-planted-injection.json")
    report["vulnerabilities"]["SQL Injection"][0]["parameter"] = "sort"
    _, _, other = read_wapiti_report(report, PLANTED_URL, SHOP_TEMPLATES)
    _, _, planted = read_wapiti_report(
        wapiti_report("wapiti-planted-injection.json"), PLANTED_URL, SHOP_TEMPLATES
    )
    sql = [f.fingerprint for f in other + planted if f.rule_id == "sql-injection"]
    assert len(set(sql)) == 2


def test_a_wapiti_report_without_its_sections_is_garbled() -> None:
    report = wapiti_report("wapiti-planted-injection.json")
    del report["anomalies"]
    with pytest.raises(GarbledReport, match="anomalies"):
        read_wapiti_report(report, PLANTED_URL, SHOP_TEMPLATES)


# --- schemathesis -----------------------------------------------------------------------


def test_schemathesis_failures_become_one_finding_per_check_and_operation() -> None:
    with (DATA / "schemathesis-events.ndjson").open() as lines:
        findings = read_failures(lines)
    found = {(f.rule_id, f.properties["method"], f.path, f.level) for f in findings}
    assert found == {
        ("not_a_server_error", "DELETE", "api/products/{product_id}", Level.ERROR),
        ("status_code_conformance", "DELETE", "api/products/{product_id}", Level.WARNING),
        ("status_code_conformance", "POST", "api/products", Level.WARNING),
    }
    crash = next(f for f in findings if f.rule_id == "not_a_server_error")
    assert crash.message.startswith("DELETE /api/products/{product_id}: Server error")
    assert "answered 500" in crash.message
    assert crash.properties["code"] == "ST101"
    undocumented = next(f for f in findings if f.path == "api/products")
    assert "Received: 400 Documented: 201, 422" in undocumented.message


def test_schemathesis_summary_gives_version_and_operations_tested() -> None:
    summary = json.loads((DATA / "schemathesis-summary.json").read_text())
    assert read_run_summary(summary) == ("4.32.5", 6, [])
    summary["errors"] = [{"title": "Network error", "message": "connection reset"}]
    assert read_run_summary(summary)[2] == ["schemathesis: Network error: connection reset"]


def test_schemathesis_garbled_events_are_reported_with_their_line() -> None:
    with pytest.raises(GarbledReport, match="line 2"):
        read_failures(['{"Initialize": {}}', '{"ScenarioFinished": {"no recorder": 1}}'])


# --- passive ----------------------------------------------------------------------------


def test_a_response_without_security_headers_misses_each_of_them() -> None:
    findings = check_response(response(f"{PLANTED_URL}/"), PLANTED_URL)
    assert {(f.rule_id, f.level, f.properties["parameter"]) for f in findings} == {
        ("header-missing-csp", Level.WARNING, "Content-Security-Policy"),
        ("header-missing-nosniff", Level.WARNING, "X-Content-Type-Options"),
        ("header-missing-frame-protection", Level.WARNING, "X-Frame-Options"),
        ("header-missing-referrer-policy", Level.NOTE, "Referrer-Policy"),
    }
    assert {f.path for f in findings} == {"/"}
    assert all(f.message.startswith("GET /: ") for f in findings)


def test_the_shops_headers_pass_and_frame_ancestors_replaces_x_frame_options() -> None:
    assert check_response(response(f"{PLANTED_URL}/openapi.json", SHOP_HEADERS), PLANTED_URL) == []
    without_xfo = {k: v for k, v in SHOP_HEADERS.items() if k != "X-Frame-Options"}
    assert check_response(response(f"{PLANTED_URL}/", without_xfo), PLANTED_URL) == []
    weak = {**SHOP_HEADERS, "X-Content-Type-Options": "sniff-away"}
    [finding] = check_response(response(f"{PLANTED_URL}/", weak), PLANTED_URL)
    assert finding.rule_id == "header-missing-nosniff"


def test_https_needs_hsts_and_secure_cookies() -> None:
    headers = [
        *SHOP_HEADERS.items(),
        ("Set-Cookie", "session=abc; Path=/; HttpOnly; SameSite=Lax"),
        ("Set-Cookie", "prefs=dark; Path=/"),
    ]
    over_https = check_response(response("https://shop.example/", headers), "https://shop.example")
    assert {(f.rule_id, f.properties["parameter"]) for f in over_https} == {
        ("header-missing-hsts", "Strict-Transport-Security"),
        ("cookie-missing-secure", "session"),
        ("cookie-missing-secure", "prefs"),
        ("cookie-missing-httponly", "prefs"),
        ("cookie-missing-samesite", "prefs"),
    }
    over_http = check_response(response("http://shop.example/", headers), "http://shop.example")
    assert {f.rule_id for f in over_http} == {"cookie-missing-httponly", "cookie-missing-samesite"}


def test_banners_are_findings_only_when_they_name_a_version() -> None:
    headers = {**SHOP_HEADERS, "Server": "nginx/1.25.3", "X-Powered-By": "Express"}
    [banner] = check_response(response(f"{PLANTED_URL}/", headers), PLANTED_URL)
    assert (banner.rule_id, banner.level, banner.properties["parameter"]) == (
        "banner-discloses-version",
        Level.NOTE,
        "Server",
    )
    assert "nginx/1.25.3" in banner.message


class _Server(ThreadingHTTPServer):
    """Serves the headers and Server banner a test sets ("": http.server's, with its
    version)."""

    extra_headers: dict[str, str]
    banner = ""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.extra_headers = {}


class _Handler(BaseHTTPRequestHandler):
    """Answers every GET with the headers and Server banner the server was given, and a
    cookie."""

    server: _Server

    def version_string(self) -> str:
        return self.server.banner or super().version_string()

    def do_GET(self) -> None:
        self.send_response(200)
        for name, value in self.server.extra_headers.items():
            self.send_header(name, value)
        self.send_header("Set-Cookie", "visitor=1; HttpOnly; SameSite=Strict")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[_Server]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def test_passive_scan_of_a_real_server_with_and_without_headers(
    local_server: _Server,
) -> None:
    target = Target(url=f"http://127.0.0.1:{local_server.server_port}")
    bare = asyncio.run(scan_passive(target, ["/", "/openapi.json"], PathTemplates()))
    assert bare.exercised == 2
    assert {(f.rule_id, f.path) for f in bare.findings if f.level is Level.WARNING} == {
        (rule, path)
        for rule in (
            "header-missing-csp",
            "header-missing-nosniff",
            "header-missing-frame-protection",
        )
        for path in ("/", "openapi.json")
    }
    [banner, _] = [f for f in bare.findings if f.rule_id == "banner-discloses-version"]
    assert "Server: BaseHTTP/" in banner.message
    local_server.extra_headers = SHOP_HEADERS
    local_server.banner = "shop"
    hardened = asyncio.run(scan_passive(target, ["/", "/openapi.json"], PathTemplates()))
    assert hardened.findings == []


def test_passive_scan_of_nothing_listening_fails_with_the_reason() -> None:
    target = Target(url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ScanFailed) as raised:
        asyncio.run(scan_passive(target, ["/"], PathTemplates()))
    assert raised.value.result.detail.startswith(f"passive: GET {target.url}/: ")


# --- paths, exceptions and parameters ---------------------------------------------------


def test_paths_are_relative_to_the_base_url_and_templated() -> None:
    assert relative_path("http://h:1/shop", "http://h:1/shop/api/search?q=1") == "api/search"
    assert relative_path("http://h:1/shop", "/shop/") == "/"
    assert relative_path("http://h:1", "http://h:1") == "/"
    templates = PathTemplates(["/api/products/{product_id}", "/api/products/search"])
    assert templates.template("api/products/search") == "api/products/search"
    assert templates.template("api/products/17") == "api/products/{product_id}"
    assert templates.template("api/products/17/reviews") == "api/products/17/reviews"


def test_an_exception_waives_dast_findings_by_rule_and_url_path_glob(tmp_path: Path) -> None:
    _, _, findings = read_wapiti_report(
        wapiti_report("wapiti-planted-injection.json"), PLANTED_URL, SHOP_TEMPLATES
    )
    (tmp_path / ".conveyor").mkdir()
    (tmp_path / ".conveyor" / "exceptions.yml").write_text(
        "exceptions:\n"
        "  - rule: internal-server-error\n"
        "    tool: wapiti\n"
        '    path: "api/**"\n'
        "    reason: the search is being rewritten in SHOP-7\n"
        "    owner: dana@example.com\n"
        "    expires: 2999-01-01\n"
    )
    applied = load_exceptions(tmp_path).apply(findings, date.today())
    dispositions = {f.rule_id: f.disposition for f in applied if f.path == "api/search"}
    assert dispositions["internal-server-error"] is Disposition.WAIVED
    assert dispositions["sql-injection"] is Disposition.NEW


def test_params_refuse_modules_that_leave_the_machine_and_relative_openapi_paths() -> None:
    defaults = DastParams(url="http://127.0.0.1:1")
    assert [t.value for t in defaults.tools] == ["wapiti", "schemathesis", "passive"]
    assert defaults.openapi == "/openapi.json"
    with pytest.raises(pydantic.ValidationError, match="wapiti_modules"):
        DastParams(url="http://127.0.0.1:1", wapiti_modules=["sql", "ssrf"])
    with pytest.raises(pydantic.ValidationError, match="openapi"):
        DastParams(url="http://127.0.0.1:1", openapi="openapi.json")
    with pytest.raises(pydantic.ValidationError, match="exactly one"):
        DastParams(url="http://127.0.0.1:1", environment="staging")
    assert DastParams(url="http://127.0.0.1:1", max_scan_time="2m").max_scan_time == 120


def test_wapiti_failing_on_its_own_locked_session_database_is_told_from_other_failures() -> None:
    failed = ExecResult(1, FailureClass.EXIT_CODE, 1.0, "exited with code 1")
    locked = ToolRun(
        failed,
        [
            '  File ".../aiosqlite/core.py", line 115, in run',
            "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked",
        ],
        [],
    )
    refused = ToolRun(failed, ["[!] Cannot establish connection with the target"], [])
    assert session_locked(locked)
    assert not session_locked(refused)
