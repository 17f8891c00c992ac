"""`python -m app`: serve payments on $HOST:$PORT (127.0.0.1:8000), a thread per request."""

from __future__ import annotations

import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIServer, make_server

from .main import application


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


def main() -> int:
    host = os.environ.get("HOST") or "127.0.0.1"
    port_text = os.environ.get("PORT") or "8000"
    if not port_text.isdigit():
        print(f"payments: PORT must be a port number, got {port_text!r}", file=sys.stderr)
        return 2
    server = make_server(host, int(port_text), application, _Server)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
