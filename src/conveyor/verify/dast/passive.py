"""Passive checks: what a browser is told in the response headers, without attacking.

The target's base URL and its OpenAPI document are fetched (redirects followed) and each
response is checked:

| rule                              | level   | finding                                      |
|-----------------------------------|---------|----------------------------------------------|
| header-missing-csp                | warning | no Content-Security-Policy                   |
| header-missing-nosniff            | warning | X-Content-Type-Options is not `nosniff`      |
| header-missing-frame-protection   | warning | neither X-Frame-Options nor frame-ancestors  |
| header-missing-referrer-policy    | note    | no Referrer-Policy                           |
| header-missing-hsts               | warning | no Strict-Transport-Security (https only)    |
| cookie-missing-secure             | warning | a cookie without Secure (https only)         |
| cookie-missing-httponly           | warning | a cookie without HttpOnly                    |
| cookie-missing-samesite           | note    | a cookie without SameSite                    |
| banner-discloses-version          | note    | Server, X-Powered-By, ... name a version     |

The parameter of a finding is the header or the cookie it is about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie

import httpx

from conveyor.engine.step import failed
from conveyor.engine.tool_output import ScanFailed
from conveyor.findings.model import Finding, Level
from conveyor.verify.dast import (
    DastTool,
    Endpoint,
    PathTemplates,
    ToolReport,
    dast_finding,
    relative_path,
    unique,
)
from conveyor.verify.target import Target

REQUEST_TIMEOUT_S = 5.0
SECURE_HEADERS_URI = "https://owasp.org/www-project-secure-headers/"
COOKIE_URI = "https://owasp.org/www-community/controls/SecureCookieAttribute"
BANNER_HEADERS = ("Server", "X-Powered-By", "X-AspNet-Version", "X-AspNetMvc-Version")
VERSION_IN_BANNER = re.compile(r"\d+\.\d+")
FRAME_OPTIONS = ("deny", "sameorigin")
PASSIVE_VERSION = "1"


@dataclass(frozen=True)
class Rule:
    id: str
    level: Level
    name: str
    why: str
    help_uri: str = SECURE_HEADERS_URI


CSP = Rule(
    "header-missing-csp",
    Level.WARNING,
    "Content-Security-Policy missing",
    "no Content-Security-Policy header: nothing limits what an injected script can do",
)
NOSNIFF = Rule(
    "header-missing-nosniff",
    Level.WARNING,
    "X-Content-Type-Options missing",
    "X-Content-Type-Options is not `nosniff`: browsers may run a response as another type",
)
FRAMING = Rule(
    "header-missing-frame-protection",
    Level.WARNING,
    "Clickjacking protection missing",
    "neither X-Frame-Options nor a CSP frame-ancestors: any site may frame the page",
)
REFERRER = Rule(
    "header-missing-referrer-policy",
    Level.NOTE,
    "Referrer-Policy missing",
    "no Referrer-Policy header: the browser's default decides what leaks in Referer",
)
HSTS = Rule(
    "header-missing-hsts",
    Level.WARNING,
    "Strict-Transport-Security missing",
    "no Strict-Transport-Security: a first visit over plain HTTP can be intercepted",
)
COOKIE_SECURE = Rule(
    "cookie-missing-secure",
    Level.WARNING,
    "Cookie without Secure",
    "is set without Secure: it is also sent over plain HTTP",
    COOKIE_URI,
)
COOKIE_HTTPONLY = Rule(
    "cookie-missing-httponly",
    Level.WARNING,
    "Cookie without HttpOnly",
    "is set without HttpOnly: injected script can read it",
    COOKIE_URI,
)
COOKIE_SAMESITE = Rule(
    "cookie-missing-samesite",
    Level.NOTE,
    "Cookie without SameSite",
    "is set without SameSite: other sites' requests carry it",
    COOKIE_URI,
)
BANNER = Rule(
    "banner-discloses-version",
    Level.NOTE,
    "Banner discloses a version",
    "names a product version: it tells an attacker which advisories apply",
)


async def scan_passive(target: Target, paths: list[str], templates: PathTemplates) -> ToolReport:
    """GET each path of the target and check the responses' headers and cookies."""
    findings: list[Finding] = []
    pages = list(dict.fromkeys(paths))
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, follow_redirects=True) as client:
        for path in pages:
            url = f"{target.url}{path}"
            try:
                response = await client.get(url)
            except httpx.HTTPError as error:
                reason = str(error) or type(error).__name__
                raise ScanFailed(failed(f"passive: GET {url}: {reason}", exit_code=None)) from None
            findings += check_response(response, target.url, templates)
    return ToolReport(DastTool.PASSIVE, PASSIVE_VERSION, unique(findings), len(pages), "pages")


def check_response(
    response: httpx.Response, base_url: str, templates: PathTemplates | None = None
) -> list[Finding]:
    """The passive findings of one response (see the module doc for the rules)."""
    path = relative_path(base_url, str(response.request.url))
    if templates is not None:
        path = templates.template(path)
    https = response.request.url.scheme == "https"
    headers = response.headers

    def finding(rule: Rule, parameter: str, what: str) -> Finding:
        request = Endpoint(response.request.method, path)
        return dast_finding(
            DastTool.PASSIVE,
            rule.id,
            rule.level,
            replace(request, parameter=parameter),  # the header or cookie: not a parameter
            f"{request.describe()}: {what}",
            rule_name=rule.name,
            help_uri=rule.help_uri,
        )

    found = [finding(rule, header, rule.why) for rule, header in _missing_headers(headers, https)]
    found += [
        finding(rule, name, f"cookie {name} {rule.why}") for rule, name in _cookies(headers, https)
    ]
    found += [
        finding(BANNER, header, f"{header}: {headers[header]} {BANNER.why}")
        for header in BANNER_HEADERS
        if VERSION_IN_BANNER.search(headers.get(header, ""))
    ]
    return found


def _missing_headers(headers: httpx.Headers, https: bool) -> list[tuple[Rule, str]]:
    """(rule, header) for each security header the response lacks."""
    csp = headers.get("Content-Security-Policy", "").strip()
    frame_options = headers.get("X-Frame-Options", "").strip().lower()
    checks = [
        (CSP, "Content-Security-Policy", not csp),
        (
            NOSNIFF,
            "X-Content-Type-Options",
            headers.get("X-Content-Type-Options", "").strip().lower() != "nosniff",
        ),
        (
            FRAMING,
            "X-Frame-Options",
            frame_options not in FRAME_OPTIONS and "frame-ancestors" not in csp.lower(),
        ),
        (REFERRER, "Referrer-Policy", not headers.get("Referrer-Policy", "").strip()),
        (HSTS, "Strict-Transport-Security", https and "Strict-Transport-Security" not in headers),
    ]
    return [(rule, header) for rule, header, absent in checks if absent]


def _cookies(headers: httpx.Headers, https: bool) -> list[tuple[Rule, str]]:
    """(rule, cookie name) for each flag a Set-Cookie lacks."""
    lacking: list[tuple[Rule, str]] = []
    for header in headers.get_list("Set-Cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue  # a cookie the browser would drop anyway
        for name, morsel in jar.items():
            if https and not morsel["secure"]:
                lacking.append((COOKIE_SECURE, name))
            if not morsel["httponly"]:
                lacking.append((COOKIE_HTTPONLY, name))
            if not morsel["samesite"]:
                lacking.append((COOKIE_SAMESITE, name))
    return lacking
