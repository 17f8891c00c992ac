"""The web UI: server-rendered Jinja2 pages (readable without JavaScript), plain JS for the
live parts, every asset served from `static/` (no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi.templating import Jinja2Templates

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

templates = Jinja2Templates(directory=TEMPLATES_DIR)


def _register_globals() -> None:
    from conveyor.server.auth import CSRF_FIELD, csrf_token

    templates.env.globals["csrf_token"] = csrf_token
    templates.env.globals["CSRF_FIELD"] = CSRF_FIELD


_register_globals()
