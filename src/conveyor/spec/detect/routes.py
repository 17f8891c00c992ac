"""Routes a web app declares, read from its syntax tree: decorators (`@app.get("/x")`,
`@bp.route("/x")`), `add_url_rule`, Starlette's `Route(...)` and Django's `path(...)`."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from conveyor.spec.detect.files import SourceFile

_DECORATORS = {"route", "get", "api_route", "head"}
_ROUTERS = {"Blueprint": "url_prefix", "APIRouter": "prefix"}
HEALTH_PATHS = ("/health", "/healthz", "/livez", "/readyz", "/ready", "/status", "/ping")
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")  # what may be written into conveyor.yml


@dataclass(frozen=True)
class Route:
    path: str
    file: str
    line: int


def call_name(node: ast.expr) -> str | None:
    """`Flask(...)` -> Flask, `fastapi.FastAPI(...)` -> FastAPI."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _prefixes(tree: ast.Module) -> dict[str, str]:
    """Blueprint and router variables with a literal prefix:
    `bp = Blueprint(..., url_prefix="/api")`."""
    found: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Call):
            continue
        keyword = _ROUTERS.get(call_name(node.value.func) or "")
        prefix = _string(_keyword(node.value, keyword)) if keyword else None
        for target in node.targets:
            if prefix and isinstance(target, ast.Name):
                found[target.id] = prefix.rstrip("/")
    return found


def _is_get(call: ast.Call, verb: str) -> bool:
    if verb not in {"route", "api_route"}:
        return True  # get, head
    methods = _keyword(call, "methods")
    if not isinstance(methods, ast.List | ast.Tuple | ast.Set):
        return True  # Flask's default: GET
    return any(_string(m) in ("GET", "get") for m in methods.elts)


def get_routes(source: SourceFile) -> list[Route]:
    """The GET routes a file declares, with their line."""
    prefixes = _prefixes(source.tree)
    routes: list[Route] = []
    for node in ast.walk(source.tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                route = _decorated(decorator, prefixes)
                if route is not None:
                    routes.append(Route(route, source.path, decorator.lineno))
        elif isinstance(node, ast.Call):
            route = _registered(node, prefixes, django=source.path.endswith("urls.py"))
            if route is not None:
                routes.append(Route(route, source.path, node.lineno))
    return routes


def _decorated(decorator: ast.expr, prefixes: dict[str, str]) -> str | None:
    if not isinstance(decorator, ast.Call) or not isinstance(decorator.func, ast.Attribute):
        return None
    verb = decorator.func.attr
    path = _string(decorator.args[0]) if decorator.args else _string(_keyword(decorator, "path"))
    if verb not in _DECORATORS or path is None or not path.startswith("/"):
        return None
    if not _is_get(decorator, verb):
        return None
    owner = decorator.func.value
    prefix = prefixes.get(owner.id, "") if isinstance(owner, ast.Name) else ""
    return (prefix + path) or "/"


def _registered(call: ast.Call, prefixes: dict[str, str], *, django: bool) -> str | None:
    name = call_name(call.func)
    path = _string(call.args[0]) if call.args else None
    if path is None:
        return None
    if name in {"add_url_rule", "Route"}:
        if not path.startswith("/") or not _is_get(call, "route"):
            return None
        owner = call.func.value if isinstance(call.func, ast.Attribute) else None
        prefix = prefixes.get(owner.id, "") if isinstance(owner, ast.Name) else ""
        return (prefix + path) or "/"
    if django and name in ("path", "re_path"):
        cleaned = path.lstrip("^").rstrip("$")
        return "/" + cleaned if not cleaned.startswith("/") else cleaned
    return None


def health_route(routes: list[Route]) -> Route | None:
    """The route that looks most like a health check: /health first, then /healthz, ..."""
    routes = [r for r in routes if _PLAIN_PATH.match(r.path)]
    by_path = {r.path.rstrip("/") or "/": r for r in reversed(routes)}
    for path in HEALTH_PATHS:
        for candidate in (path, f"/api{path}"):
            if candidate in by_path:
                return by_path[candidate]
    return None


def home_route(routes: list[Route]) -> Route | None:
    """A plain GET route a smoke check can read: `/` first, else the first without
    variables."""
    plain = [
        r for r in routes if _PLAIN_PATH.match(r.path) and r.path.rstrip("/") not in HEALTH_PATHS
    ]
    root = [r for r in plain if r.path == "/"]
    best = root or plain
    return best[0] if best else None
