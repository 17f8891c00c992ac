"""SARIF 2.1.0: reading tools' output into findings, writing findings back out, merging.

Written by hand on purpose: the object model is a few dozen lines of JSON, and the
libraries that model all of SARIF (sarif-om) add nothing for this narrow use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from conveyor import __version__
from conveyor.findings.fingerprint import FINGERPRINT_KEY
from conveyor.findings.model import Category, Disposition, Finding, Level, Waiver

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"

_BASELINE_STATE = {
    Disposition.NEW: "new",
    Disposition.UNCHANGED: "unchanged",
    Disposition.WAIVED: "unchanged",
    Disposition.EXPIRED_WAIVER: "unchanged",
}


def read_results(
    document: Mapping[str, Any],
    *,
    tool: str,
    category: Category,
    default_level: Level,
    base: Path | None = None,
) -> list[Finding]:
    """Findings from a tool's own SARIF (ruff, bandit, semgrep), not yet fingerprinted;
    their paths made relative to `base` (tools write absolute `file://` URIs or `./`)."""
    findings: list[Finding] = []
    for run in document.get("runs", []):
        rules = _rules_by_id(run)
        for result in run.get("results", []):
            rule_id = str(result.get("ruleId") or result.get("rule", {}).get("id") or "unknown")
            rule = rules.get(rule_id, {})
            location = _first_location(result, base)
            findings.append(
                Finding(
                    tool=tool,
                    rule_id=rule_id,
                    level=_level(result, rule, default_level),
                    message=str(result.get("message", {}).get("text", "")).strip(),
                    category=category,
                    path=location.get("path"),
                    start_line=location.get("start_line"),
                    start_column=location.get("start_column"),
                    end_line=location.get("end_line"),
                    snippet=location.get("snippet"),
                    rule_name=rule.get("name"),
                    help_uri=rule.get("helpUri"),
                    properties=dict(result.get("properties", {})),
                )
            )
    return findings


def _rules_by_id(run: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    driver = run.get("tool", {}).get("driver", {})
    return {str(rule.get("id")): rule for rule in driver.get("rules", []) or []}


def _level(result: Mapping[str, Any], rule: Mapping[str, Any], default: Level) -> Level:
    raw = result.get("level") or rule.get("defaultConfiguration", {}).get("level")
    try:
        return Level(raw) if raw else default
    except ValueError:
        return default


def _first_location(result: Mapping[str, Any], base: Path | None = None) -> dict[str, Any]:
    locations = result.get("locations") or []
    if not locations:
        return {}
    physical = locations[0].get("physicalLocation", {})
    uri = physical.get("artifactLocation", {}).get("uri")
    region = physical.get("region", {})
    snippet = region.get("snippet", {}).get("text")
    return {
        "path": project_path(uri, base) if uri else None,
        "start_line": region.get("startLine"),
        "start_column": region.get("startColumn"),
        "end_line": region.get("endLine"),
        "snippet": snippet,
    }


def project_path(uri: str, base: Path | None = None) -> str:
    """A tool's path or URI as the project-relative posix path findings carry."""
    if uri.startswith("file://"):
        uri = unquote(uri.removeprefix("file://"))
    if not uri.startswith("/"):
        return PurePosixPath(uri).as_posix()  # drops "./"
    absolute = Path(uri)
    for root in (base, base.resolve()) if base is not None else ():
        if absolute.is_relative_to(root):
            return absolute.relative_to(root).as_posix()
    return absolute.as_posix()


def write_log(findings: Iterable[Finding], *, tools: Mapping[str, str]) -> dict[str, Any]:
    """A SARIF log with one run per tool (`tools` maps name -> version)."""
    by_tool: dict[str, list[Finding]] = {name: [] for name in tools}
    for finding in findings:
        by_tool.setdefault(finding.tool, []).append(finding)
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [_run(name, tools.get(name, "unknown"), items) for name, items in by_tool.items()],
    }


def _run(tool: str, version: str, findings: list[Finding]) -> dict[str, Any]:
    rule_ids = sorted({f.rule_id for f in findings})
    index = {rule_id: position for position, rule_id in enumerate(rule_ids)}
    rules = [_rule(rule_id, findings) for rule_id in rule_ids]
    return {
        "tool": {
            "driver": {
                "name": tool,
                "version": version,
                "informationUri": "https://conveyor.dev/",
                "rules": rules,
            }
        },
        "automationDetails": {"id": f"conveyor/{tool}/"},
        "properties": {"conveyorVersion": __version__},
        "results": [_result(f, index[f.rule_id]) for f in findings],
    }


def _rule(rule_id: str, findings: list[Finding]) -> dict[str, Any]:
    example = next(f for f in findings if f.rule_id == rule_id)
    rule: dict[str, Any] = {"id": rule_id}
    if example.rule_name:
        rule["name"] = example.rule_name
    if example.help_uri:
        rule["helpUri"] = example.help_uri
    rule["properties"] = {"category": example.category.value}
    return rule


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": finding.level.value,
        "message": {"text": finding.message or finding.rule_id},
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "baselineState": _BASELINE_STATE[finding.disposition],
        "properties": {"disposition": finding.disposition.value, **finding.properties},
    }
    if finding.path is not None:
        result["locations"] = [_location(finding)]
    if finding.waiver is not None:
        result["suppressions"] = [_suppression(finding.waiver, finding.disposition)]
    return result


def _location(finding: Finding) -> dict[str, Any]:
    region: dict[str, Any] = {}
    if finding.start_line:
        region["startLine"] = finding.start_line
        if finding.start_column:
            region["startColumn"] = finding.start_column
        if finding.end_line and finding.end_line >= finding.start_line:
            region["endLine"] = finding.end_line
    if finding.snippet:
        region["snippet"] = {"text": finding.snippet}
    physical: dict[str, Any] = {"artifactLocation": {"uri": finding.path}}
    if region:
        physical["region"] = region
    return {"physicalLocation": physical}


def _suppression(waiver: Waiver, disposition: Disposition) -> dict[str, Any]:
    # An expired waiver is still listed, as "rejected", so the reader sees why it blocks.
    status = "accepted" if disposition is Disposition.WAIVED else "rejected"
    return {
        "kind": "external",
        "status": status,
        "justification": waiver.reason,
        "location": {"physicalLocation": {"artifactLocation": {"uri": ".conveyor/exceptions.yml"}}},
        "properties": {"owner": waiver.owner, "expires": waiver.expires, "source": waiver.source},
    }


def merge_logs(logs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """One SARIF log holding every run of the given logs."""
    runs: list[Any] = []
    for log in logs:
        runs.extend(log.get("runs", []))
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": runs}


def findings_from_log(log: Mapping[str, Any]) -> list[Finding]:
    """Read back a log this module wrote (for reports and baselines)."""
    findings: list[Finding] = []
    for run in log.get("runs", []):
        tool = run.get("tool", {}).get("driver", {}).get("name", "unknown")
        rules = _rules_by_id(run)
        for result in run.get("results", []):
            rule = rules.get(str(result.get("ruleId")), {})
            location = _first_location(result)
            properties = dict(result.get("properties", {}))
            disposition = Disposition(properties.pop("disposition", "new"))
            findings.append(
                Finding(
                    tool=tool,
                    rule_id=str(result.get("ruleId")),
                    level=Level(result.get("level", "warning")),
                    message=result.get("message", {}).get("text", ""),
                    category=Category(rule.get("properties", {}).get("category", "lint")),
                    path=location.get("path"),
                    start_line=location.get("start_line"),
                    start_column=location.get("start_column"),
                    end_line=location.get("end_line"),
                    snippet=location.get("snippet"),
                    fingerprint=result.get("partialFingerprints", {}).get(FINGERPRINT_KEY, ""),
                    rule_name=rule.get("name"),
                    help_uri=rule.get("helpUri"),
                    disposition=disposition,
                    waiver=_read_waiver(result),
                    properties=properties,
                )
            )
    return findings


def _read_waiver(result: Mapping[str, Any]) -> Waiver | None:
    suppressions = result.get("suppressions") or []
    if not suppressions:
        return None
    props = suppressions[0].get("properties", {})
    return Waiver(
        reason=suppressions[0].get("justification", ""),
        owner=props.get("owner", ""),
        expires=props.get("expires", ""),
        source=props.get("source", ""),
    )
