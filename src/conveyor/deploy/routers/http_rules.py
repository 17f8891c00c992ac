"""What the builtin router lets through, and how headers change on the way through it.

h11 parses and frames: it already refuses conflicting Content-Length values, a malformed
one, and any Transfer-Encoding but one `chunked`. What a proxy needs on top is here:
a request framed two ways is refused (RFC 9112 section 6.3: the next hop may pick the
other framing and read a smuggled second request), only origin-form targets are served,
the hop-by-hop headers stop at the proxy (RFC 9110 section 7.6.1) and each message is
re-framed from h11's own reading of it, and X-Forwarded-For/-Proto say who asked.
"""

from __future__ import annotations

import h11

Headers = list[tuple[bytes, bytes]]

# Never forwarded: they describe one connection, not the message. Content-Length and
# Transfer-Encoding are re-set from the framing h11 read (`framing`); Expect is answered
# by the proxy itself (it sends the 100 Continue).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"content-length",
        b"upgrade",
        b"expect",
    }
)
# Replaced, never trusted from the client: the proxy says what it saw.
FORWARDED = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})
SCHEME = b"http"  # the router listens for plain HTTP only


class Refused(Exception):
    """A request the proxy answers itself, with `status`, and then closes the connection."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def values(headers: Headers, name: bytes) -> list[bytes]:
    """Every comma-separated value of a header (h11 gives names in lower case)."""
    return [
        part.strip().lower()
        for key, value in headers
        if key == name
        for part in value.split(b",")
        if part.strip()
    ]


def check_request(request: h11.Request) -> None:
    """Refuse what a proxy must not forward: ambiguous framing and non-origin targets."""
    names = [name for name, _ in request.headers]
    if b"transfer-encoding" in names and b"content-length" in names:
        raise Refused(400, "bad request: both Content-Length and Transfer-Encoding\n")
    if b"transfer-encoding" in names and request.http_version != b"1.1":
        raise Refused(400, "bad request: Transfer-Encoding in an HTTP/1.0 request\n")
    if names.count(b"host") > 1:
        raise Refused(400, "bad request: more than one Host header\n")
    target = request.target
    if target.startswith(b"/") or (target == b"*" and request.method == b"OPTIONS"):
        return
    # Absolute-form (`GET http://elsewhere/`) and authority-form (CONNECT) ask for a
    # forward proxy, which this is not.
    raise Refused(400, "bad request: only origin-form targets (/path?query) are served\n")


def wants_upgrade(request: h11.Request) -> bool:
    """A protocol switch (WebSocket) the client asked for as RFC 9110 says: Upgrade
    named in Connection, on HTTP/1.1."""
    return (
        request.http_version == b"1.1"
        and b"upgrade" in values(list(request.headers), b"connection")
        and bool(values(list(request.headers), b"upgrade"))
    )


def end_to_end(headers: Headers) -> Headers:
    """The headers meant for the next hop: hop-by-hop ones and those Connection names
    removed."""
    # Connection may name any header, but not Host: the request would be invalid upstream.
    named = set(values(headers, b"connection")) - {b"host"}
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in named]


def framing(headers: Headers) -> Headers:
    """The framing h11 validated, to send on: chunked wins (only a response may carry both,
    and then Content-Length must be ignored: RFC 9112 section 6.3)."""
    if b"chunked" in values(headers, b"transfer-encoding"):
        return [(b"transfer-encoding", b"chunked")]
    return [(n, v) for n, v in headers if n == b"content-length"][:1]


def switch(headers: Headers) -> Headers:
    return [(b"connection", b"upgrade"), *((n, v) for n, v in headers if n == b"upgrade")]


def upstream_request_headers(request: h11.Request, client_ip: str, upgrade: bool) -> Headers:
    headers = list(request.headers)
    kept = [(n, v) for n, v in end_to_end(headers) if n not in FORWARDED]
    chain = [v.strip() for n, v in headers if n == b"x-forwarded-for"]
    # Appended, as proxies do: only the last address is the proxy's word, the rest is the
    # client's claim.
    forwarded_for = b", ".join([*chain, client_ip.encode()])
    added = [(b"x-forwarded-for", forwarded_for), (b"x-forwarded-proto", SCHEME)]
    return kept + framing(headers) + added + (switch(headers) if upgrade else [])


def client_response_headers(
    response: h11.Response | h11.InformationalResponse,
) -> Headers:
    headers = list(response.headers)
    upgrade = response.status_code == 101
    return end_to_end(headers) + (switch(headers) if upgrade else framing(headers))
