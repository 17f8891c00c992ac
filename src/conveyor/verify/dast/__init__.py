"""DAST: black-box security tests of a running service, normalised into findings.

Each tool module (`wapiti`, `schemathesis`, `passive`) turns what it saw into
`Finding`s of category DAST. A DAST finding has no source file, so:

- `Finding.path` is the URL path relative to the target's base URL, without the leading
  slash, with ids replaced by the OpenAPI path template when one matches
  (`api/search`, `api/products/{product_id}`, `openapi.json`); the base URL itself is
  `/`. Relative, so an exception in `.conveyor/exceptions.yml` can scope a waiver with
  the same globs as everywhere else (`path: "api/**"`).
- the fingerprint is made of the tool, the rule, the HTTP method, that path and the
  parameter (or header, or cookie) -- never the host, the port or the payload -- so the
  same weakness on the next deploy (another port, another random payload) matches the
  target branch's baseline and a `fingerprint:` exception.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from conveyor.findings.fingerprint import fingerprint
from conveyor.findings.model import Category, Finding, Level

ROOT_PATH = "/"  # Finding.path of the target's base URL itself
T = TypeVar("T")


class DastTool(StrEnum):
    WAPITI = "wapiti"
    SCHEMATHESIS = "schemathesis"
    PASSIVE = "passive"


class GarbledReport(ValueError):
    """A tool's report is not what its version is documented to write."""


@dataclass(frozen=True)
class Endpoint:
    """Where a finding is: method, path (relative, templated) and the parameter, if any."""

    method: str
    path: str
    parameter: str = ""

    def describe(self) -> str:
        where = f"{self.method} {display_path(self.path)}"
        return f"{where} (parameter {self.parameter})" if self.parameter else where


@dataclass
class ToolReport:
    """One tool's share of a scan: its findings and how much it actually exercised."""

    tool: DastTool
    version: str
    findings: list[Finding]
    exercised: int  # pages crawled, operations tested or responses checked
    unit: str  # what `exercised` counts, for the log ("pages", "operations", ...)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.tool.value}: {self.exercised} {self.unit}, {len(self.findings)} findings"


def display_path(path: str) -> str:
    """A finding's relative path as the URL path users recognise (`/api/search`)."""
    return path if path == ROOT_PATH else f"/{path}"


def relative_path(base_url: str, url_or_path: str) -> str:
    """The path of a URL (or an absolute URL path) relative to the target's base URL."""
    path = urlsplit(url_or_path).path or "/"
    base = urlsplit(base_url).path.rstrip("/")
    if base and (path == base or path.startswith(f"{base}/")):
        path = path[len(base) :]
    return path.strip("/") or ROOT_PATH


class PathTemplates:
    """Maps concrete paths (`api/products/7`) to the OpenAPI document's templates."""

    def __init__(self, templates: Iterable[str] = ()) -> None:
        compiled = [(t.strip("/") or ROOT_PATH, _template_regex(t)) for t in templates]
        # Literal paths before templated ones: /api/products/search beats /{id}.
        self._templates = sorted(compiled, key=lambda item: item[0].count("{"))

    @classmethod
    def from_openapi(cls, document: Mapping[str, Any] | None) -> PathTemplates:
        paths = document.get("paths") if document else None
        return cls(paths.keys() if isinstance(paths, Mapping) else ())

    def template(self, path: str) -> str:
        for template, regex in self._templates:
            if regex.fullmatch(path):
                return template
        return path


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template.strip("/") or ROOT_PATH)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    )


def dast_fingerprint(tool: DastTool, rule_id: str, endpoint: Endpoint) -> str:
    """Identity across deploys: no host, port or payload in it (see the module doc)."""
    return fingerprint(
        f"{tool.value}/{rule_id}", endpoint.path, f"{endpoint.method} {endpoint.parameter}", 0
    )


def dast_finding(
    tool: DastTool,
    rule_id: str,
    level: Level,
    endpoint: Endpoint,
    message: str,
    *,
    rule_name: str | None = None,
    help_uri: str | None = None,
    properties: Mapping[str, Any] | None = None,
) -> Finding:
    return Finding(
        tool=tool.value,
        rule_id=rule_id,
        level=level,
        message=message,
        category=Category.DAST,
        path=endpoint.path,
        fingerprint=dast_fingerprint(tool, rule_id, endpoint),
        rule_name=rule_name,
        help_uri=help_uri,
        properties={
            "method": endpoint.method,
            "parameter": endpoint.parameter,
            **(properties or {}),
        },
    )


def unique(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per fingerprint (tools report the same weakness once per payload);
    the most severe one is kept, in first-seen order."""
    kept: dict[str, Finding] = {}
    for finding in findings:
        seen = kept.get(finding.fingerprint)
        if seen is None or finding.level.rank > seen.level.rank:
            kept[finding.fingerprint] = finding
    return list(kept.values())


def slug(text: str) -> str:
    """A rule id from a tool's category name: "SQL Injection" -> "sql-injection"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


async def gather_all(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run the tools at once; the first one that fails stops the others and is raised."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coroutine) for coroutine in coroutines]
    except ExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return [task.result() for task in tasks]
