"""`python -m app`: serve the shop with uvicorn on $HOST:$PORT (127.0.0.1:8000)."""

from __future__ import annotations

import os
import sys

import uvicorn

from .config import ConfigError
from .main import create_app


def main() -> int:
    host = os.environ.get("HOST") or "127.0.0.1"
    port_text = os.environ.get("PORT") or "8000"
    if not port_text.isdigit():
        print(f"shop: PORT must be a port number, got {port_text!r}", file=sys.stderr)
        return 2
    try:
        app = create_app()
    except ConfigError as error:
        print(f"shop: {error}", file=sys.stderr)
        return 2
    # No `server: uvicorn` header: it tells an attacker what to look up.
    uvicorn.run(app, host=host, port=int(port_text), server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
