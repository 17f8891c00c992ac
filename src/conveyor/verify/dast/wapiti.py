"""wapiti: a black-box scanner that crawls the target and attacks every parameter it finds.

wapiti reads the OpenAPI document too (`--swagger`), so API parameters are attacked as
well as the pages' links and forms. Only modules that talk to the target alone are
allowed: the ones that need wapiti's own servers on the internet (ssrf, xxe, log4shell,
takeover) or download databases (wapp, nikto, htp, cms, ...) are not. Crash reports to
wapiti's authors are off, and the DNS endpoint is local, so nothing leaves the machine
but requests to the target.

Its JSON report becomes findings:
- `vulnerabilities` (confirmed weaknesses) at wapiti's level: 4 critical and 3 high are
  errors, 2 medium a warning, 1 low a note;
- `anomalies` (the target answered 500 or timed out under attack) are warnings: a
  crash on hostile input is a robustness bug that often hides a vulnerability, but it is
  not one yet;
- `additionals` (what the scan learned: methods, technologies) are notes.
The rule id is the category's slug (`sql-injection`, `internal-server-error`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal, get_args

from conveyor.engine.step import StepContext, ToolRun
from conveyor.engine.tool_output import read_json_report, tool_failed
from conveyor.findings.model import Finding, Level
from conveyor.verify.dast import (
    DastTool,
    Endpoint,
    GarbledReport,
    PathTemplates,
    ToolReport,
    dast_finding,
    relative_path,
    slug,
    unique,
)
from conveyor.verify.target import Target

WAPITI = "wapiti"
WapitiModule = Literal[
    "backup",
    "buster",
    "cookieflags",
    "crlf",
    "csp",
    "csrf",
    "exec",
    "file",
    "htaccess",
    "http_headers",
    "https_redirect",
    "ldap",
    "methods",
    "permanentxss",
    "redirect",
    "shellshock",
    "sql",
    "timesql",
    "upload",
    "xss",
]
ALLOWED_MODULES: tuple[WapitiModule, ...] = get_args(WapitiModule)
# Injection, XSS and file disclosure; headers and cookies are the passive checks' job.
DEFAULT_MODULES: tuple[WapitiModule, ...] = (
    "sql",
    "xss",
    "permanentxss",
    "exec",
    "file",
    "redirect",
    "crlf",
)
REQUEST_TIMEOUT_S = 5
HARD_LIMIT_GRACE_S = 30  # beyond its own budgets, before wapiti is killed
VULNERABILITY_LEVELS = {4: Level.ERROR, 3: Level.ERROR, 2: Level.WARNING, 1: Level.NOTE}
# The report's sections, with a fixed level (None: the finding's own wapiti level).
SECTIONS: dict[str, Level | None] = {
    "vulnerabilities": None,
    "anomalies": Level.WARNING,
    "additionals": Level.NOTE,
}
# Lines of wapiti's log that mean the scan did less than asked.
PARTIAL_SCAN_SIGNS = (
    "Max scan time was reached",
    "Max attack time was reached",
    "requests were skipped due to network issues",
    "seems broken and will be skipped",
)


@dataclasses.dataclass(frozen=True)
class WapitiScan:
    target: Target
    modules: tuple[str, ...]
    max_scan_time: float
    openapi_url: str | None
    scratch: Path  # wapiti's report, log, session and HOME


def wapiti_argv(scan: WapitiScan, report: Path, log: Path) -> list[str]:
    per_module = max(scan.max_scan_time / max(len(scan.modules), 1), 1.0)
    argv = [WAPITI, "-u", f"{scan.target.url}/", "--scope", "folder"]
    if scan.openapi_url is not None:
        argv += ["--swagger", scan.openapi_url]
    return [
        *argv,
        *("-m", ",".join(scan.modules)),
        *("--max-scan-time", f"{scan.max_scan_time:g}"),
        *("--max-attack-time", f"{per_module:g}"),
        *("--timeout", str(REQUEST_TIMEOUT_S)),
        "--flush-session",
        *("--store-session", str(scan.scratch / "session")),
        *("--store-config", str(scan.scratch / "config")),
        "--no-bugreport",
        *("--dns-endpoint", "127.0.0.1"),  # log4shell's lookup at start-up stays local
        *("-v", "0"),
        *("--log", str(log)),
        *("-f", "json"),
        *("-o", str(report)),
    ]


async def scan_wapiti(ctx: StepContext, scan: WapitiScan, templates: PathTemplates) -> ToolReport:
    scan.scratch.mkdir(parents=True, exist_ok=True)
    report, log = scan.scratch / "wapiti.json", scan.scratch / "wapiti.log"
    report.unlink(missing_ok=True)
    log.unlink(missing_ok=True)
    # HOME in the scratch folder: wapiti keeps state there when not told otherwise.
    tool_ctx = dataclasses.replace(
        ctx,
        env={**ctx.env, "HOME": str(scan.scratch)},
        timeout=2 * scan.max_scan_time + HARD_LIMIT_GRACE_S,
    )
    ctx.say(f"wapiti: modules {','.join(scan.modules)} against {scan.target.url}/")
    ran = await tool_ctx.run_tool(wapiti_argv(scan, report, log))
    if not ran.result.ok and session_locked(ran):
        # wapiti's own SQLite session (aiosqlite) sometimes fails with "database is
        # locked" on a loaded machine: a fault of the tool, not a finding about the target.
        ctx.say("wapiti: its own session database was locked; scanning again, once")
        report.unlink(missing_ok=True)
        log.unlink(missing_ok=True)
        ran = await tool_ctx.run_tool(wapiti_argv(scan, report, log))
    if not ran.result.ok:
        raise tool_failed(WAPITI, ran)
    try:
        version, pages, findings = read_wapiti_report(
            read_json_report(WAPITI, ran, report), scan.target.url, templates
        )
    except GarbledReport as error:
        detail = f"wapiti wrote a report Conveyor cannot read: {error}"
        raise tool_failed(WAPITI, ran, detail) from None
    if pages == 0:
        raise tool_failed(
            WAPITI, ran, f"wapiti crawled no page of {scan.target.url}/, so nothing is proven"
        )
    return ToolReport(DastTool.WAPITI, version, findings, pages, "pages", partial_scan_notes(log))


def session_locked(ran: ToolRun) -> bool:
    """Whether wapiti failed on its own session database being locked (SQLITE_BUSY)."""
    return any("database is locked" in line for line in [*ran.stderr_tail, *ran.stdout_tail])


def read_wapiti_report(
    document: dict[str, Any], base_url: str, templates: PathTemplates
) -> tuple[str, int, list[Finding]]:
    """(wapiti's version, pages crawled, findings) from its JSON report."""
    infos = document.get("infos")
    if not isinstance(infos, dict):
        raise GarbledReport("no `infos`")
    classifications = document.get("classifications") or {}
    findings: list[Finding] = []
    for section, fixed_level in SECTIONS.items():
        categories = document.get(section)
        if not isinstance(categories, dict):
            raise GarbledReport(f"no `{section}`")
        for category, items in categories.items():
            about = classifications.get(category) or {}
            try:
                for item in items:
                    level = _level(item) if fixed_level is None else fixed_level
                    endpoint = _endpoint(item, base_url, templates)
                    findings.append(_finding(category, item, level, endpoint, about))
            except (AttributeError, TypeError, ValueError) as error:
                raise GarbledReport(f"{section} / {category}: {error}") from None
    version = str(infos.get("version") or "unknown").removeprefix("Wapiti ").strip()
    return version, int(infos.get("crawled_pages_nbr") or 0), unique(findings)


def _level(item: dict[str, Any]) -> Level:
    return VULNERABILITY_LEVELS.get(int(item.get("level") or 0), Level.NOTE)


def _endpoint(item: dict[str, Any], base_url: str, templates: PathTemplates) -> Endpoint:
    path = templates.template(relative_path(base_url, str(item.get("path") or "/")))
    return Endpoint(str(item.get("method") or "GET"), path, str(item.get("parameter") or ""))


def _finding(
    category: str, item: dict[str, Any], level: Level, endpoint: Endpoint, about: dict[str, Any]
) -> Finding:
    info = " ".join(str(item.get("info") or category).split())
    curl = item.get("curl_command")
    evidence = f"; reproduce: {curl}" if curl else ""
    references = about.get("ref") or {}
    return dast_finding(
        DastTool.WAPITI,
        slug(category),
        level,
        endpoint,
        f"{endpoint.describe()}: {info}{evidence}",
        rule_name=category,
        help_uri=next(iter(references.values()), None),
        properties={
            "module": item.get("module"),
            "wapiti_level": item.get("level"),
            "wstg": item.get("wstg") or [],
            "reproduce": curl,
        },
    )


def partial_scan_notes(log: Path) -> list[str]:
    """What wapiti's log says it left out (budgets reached, requests lost, broken modules)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    # Log lines start with a time stamp, a level and wapiti's function: "... - message".
    signs = [
        " ".join(line.split(" - ", 1)[-1].split())
        for line in lines
        if any(sign in line for sign in PARTIAL_SCAN_SIGNS)
    ]
    return [f"wapiti: {line}" for line in dict.fromkeys(signs)]
