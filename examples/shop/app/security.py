"""Security headers on every response: a Content-Security-Policy, nosniff, no framing.

The catalogue page's inline <script> and <style> are allowed by their SHA-256 hashes,
computed from the page template itself, so editing them cannot silently break the page
and no 'unsafe-inline' is needed. The interactive API docs (/docs, /redoc) load Swagger
UI and ReDoc from a CDN with an inline bootstrap script: only they get a looser policy.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .pages import PAGE

DOCS_PATHS = ("/docs", "/redoc")
DOCS_CDN = "https://cdn.jsdelivr.net"


def inline_hashes(html: str, tag: str) -> list[str]:
    """CSP source expressions ('sha256-...') for each inline <tag> element of `html`."""
    pattern = re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL)
    return [f"'sha256-{_sha256(body)}'" for body in pattern.findall(html)]


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def page_policy(html: str) -> str:
    """Nothing but the page's own inline script and style, and calls back to this origin."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(inline_hashes(html, 'script'))}",
            f"style-src {' '.join(inline_hashes(html, 'style'))}",
            "connect-src 'self'",
            "img-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


PAGE_POLICY = page_policy(PAGE.template)
DOCS_POLICY = "; ".join(
    [
        "default-src 'none'",
        f"script-src 'unsafe-inline' {DOCS_CDN}",
        f"style-src 'unsafe-inline' {DOCS_CDN} https://fonts.googleapis.com",
        "font-src https://fonts.gstatic.com",
        f"img-src 'self' data: {DOCS_CDN} https://fastapi.tiangolo.com",
        f"worker-src blob: {DOCS_CDN}",
        "connect-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
HSTS = "max-age=31536000; includeSubDomains"


def policy_for(path: str) -> str:
    docs = any(path == p or path.startswith(f"{p}/") for p in DOCS_PATHS)
    return DOCS_POLICY if docs else PAGE_POLICY


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = {**COMMON_HEADERS, "Content-Security-Policy": policy_for(str(scope["path"]))}
        if scope.get("scheme") == "https":  # HSTS over plain HTTP is ignored by browsers
            extra["Strict-Transport-Security"] = HSTS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
