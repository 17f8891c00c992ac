"""The application in a web project's source: which framework, which object a server
loads, which files it keeps where (SQLite paths from environment variables), and which
commands prepare its database. Everything is read from syntax trees; nothing is run."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from conveyor.spec.detect.files import SourceFile, module_name, read_text
from conveyor.spec.detect.model import AppTarget, Clue, DataSetting, Framework, Task
from conveyor.spec.detect.routes import call_name

_CONSTRUCTORS = {
    "FastAPI": Framework.FASTAPI,
    "Starlette": Framework.STARLETTE,
    "Flask": Framework.FLASK,
}
_FACTORIES = ("create_app", "make_app")
_PREFERRED = ("app", "application")  # Flask's and the servers' own first guesses
_DATA_NAME = re.compile(r"(DB|DATABASE|SQLITE)", re.IGNORECASE)
_SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|API_KEY)", re.IGNORECASE)
_DATA_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_TASK_NAME = re.compile(
    r"(init|migrate|upgrade|create)[-_]?(db|database|tables|schema)?$|^db[-_]", re.I
)
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_COMMAND_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_SETTINGS = re.compile(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([\w.]+)['"]""")


@dataclass(frozen=True)
class AppCandidate:
    framework: Framework
    target: AppTarget
    clue: Clue

    def rank(self) -> tuple[int, int, str]:
        preferred = 0 if self.target.attribute in _PREFERRED else 1
        return (preferred, self.target.module.count("."), str(self.target))


def app_candidates(sources: list[SourceFile], import_root: str) -> list[AppCandidate]:
    """Module-level `app = Flask(...)`/`FastAPI(...)`, and factories that build one."""
    found: list[AppCandidate] = []
    for source in sources:
        module = module_name(source.path, import_root)
        if module is None:
            continue
        for node in source.tree.body:
            found.extend(_candidates_in(node, module, source.path))
    return sorted(found, key=AppCandidate.rank)


def _candidates_in(node: ast.stmt, module: str, path: str) -> list[AppCandidate]:
    if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
        framework = _CONSTRUCTORS.get(call_name(node.value.func) or "")
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if framework is not None and names:
            seen = f"`{names[0]} = {call_name(node.value.func)}(...)`"
            target = AppTarget(module, names[0])
            return [AppCandidate(framework, target, Clue(path, node.lineno, seen))]
    if isinstance(node, ast.FunctionDef) and node.name in _FACTORIES:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Call):
                framework = _CONSTRUCTORS.get(call_name(inner.func) or "")
                if framework is not None:
                    seen = f"app factory `{node.name}()` builds a {call_name(inner.func)} app"
                    target = AppTarget(module, node.name, factory=True)
                    return [AppCandidate(framework, target, Clue(path, node.lineno, seen))]
    return []


def imported_frameworks(sources: list[SourceFile]) -> dict[Framework, Clue]:
    """The first import of each framework, where it is."""
    found: dict[Framework, Clue] = {}
    for source in sources:
        for node in ast.walk(source.tree):
            names: list[str] = []
            if not isinstance(node, ast.stmt):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in Framework.__members__.values() and Framework(top) not in found:
                    found[Framework(top)] = Clue(source.path, node.lineno, f"imports {name}")
    return found


def django_app(root: Path) -> tuple[AppTarget, Clue] | None:
    """manage.py's settings module names the project: `mysite.wsgi:application`."""
    text = read_text(root, "manage.py")
    match = _SETTINGS.search(text or "")
    if text is None or match is None:
        return None
    project = match.group(1).rsplit(".", 1)[0]
    if not (root / project.replace(".", "/") / "wsgi.py").is_file():
        return None
    line = text[: match.start()].count("\n") + 1
    seen = f"DJANGO_SETTINGS_MODULE = {match.group(1)}; {project}/wsgi.py defines `application`"
    return AppTarget(f"{project}.wsgi", "application"), Clue("manage.py", line, seen)


# --- data files -------------------------------------------------------------------------


def data_settings(sources: list[SourceFile]) -> list[DataSetting]:
    """Environment variables the app reads a database file's path from (best effort):
    `os.environ.get("TODO_DB", "todo.db")`, or Flask's `from_prefixed_env()` with a
    `DATABASE` config key (FLASK_DATABASE)."""
    found: dict[str, DataSetting] = {}
    for source in sources:
        for setting in (*_environ_reads(source), *_flask_prefixed(source)):
            found.setdefault(setting.variable, setting)
    return list(found.values())


def _environ_reads(source: SourceFile) -> list[DataSetting]:
    found: list[DataSetting] = []
    for node in ast.walk(source.tree):
        if not isinstance(node, ast.expr):
            continue
        variable, default = _environ_read(node)
        if variable is None or not _DATA_NAME.search(variable):
            continue
        filename = _data_file(default) or f"{variable.lower()}.db"
        if default is not None and not default.endswith(_DATA_SUFFIXES):
            continue  # a URL or a server's address: not a file in the data folder
        seen = f"reads the environment variable {variable} (default {default!r})"
        found.append(DataSetting(variable, filename, Clue(source.path, node.lineno, seen)))
    return found


def _environ_read(node: ast.expr) -> tuple[str | None, str | None]:
    """`os.environ.get("X", "d")` and `os.getenv("X", "d")` -> (X, d);
    `os.environ["X"]` -> (X, None)."""
    if isinstance(node, ast.Call) and call_name(node.func) in ("get", "getenv") and node.args:
        owner = node.func.value if isinstance(node.func, ast.Attribute) else None
        if call_name(node.func) == "get" and not (
            owner is not None and call_name(owner) == "environ"
        ):
            return None, None
        name = _literal(node.args[0])
        default = _literal(node.args[1]) if len(node.args) > 1 else None
        return _variable(name), default
    if isinstance(node, ast.Subscript) and call_name(node.value) == "environ":
        return _variable(_literal(node.slice)), None
    return None, None


def _variable(name: str | None) -> str | None:
    return name if name is not None and _VARIABLE_NAME.match(name) else None


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _data_file(text: str | None) -> str | None:
    name = text.rsplit("/", 1)[-1] if text else ""
    return name if name.endswith(_DATA_SUFFIXES) and _FILE_NAME.match(name) else None


def _flask_prefixed(source: SourceFile) -> list[DataSetting]:
    prefix = None
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Call) and call_name(node.func) == "from_prefixed_env":
            prefix = (_literal(node.args[0]) if node.args else None) or "FLASK"
            line = node.lineno
    if prefix is None:
        return []
    found: list[DataSetting] = []
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Call) and call_name(node.func) == "from_mapping":
            for keyword in node.keywords:
                if keyword.arg and _DATA_NAME.search(keyword.arg) and _variable(keyword.arg):
                    filename = _last_file(keyword.value) or f"{keyword.arg.lower()}.db"
                    variable = f"{prefix}_{keyword.arg}"
                    seen = (
                        f"config {keyword.arg} (line {keyword.value.lineno}) may be set by "
                        f"{variable}: from_prefixed_env()"
                    )
                    found.append(DataSetting(variable, filename, Clue(source.path, line, seen)))
    return found


def _last_file(node: ast.expr) -> str | None:
    names = [
        n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    files = [name for name in names if _data_file(name)]
    return _data_file(files[-1]) if files else None


def secret_settings(sources: list[SourceFile]) -> list[DataSetting]:
    """Environment variables that look like secrets (SECRET, TOKEN, PASSWORD, API_KEY),
    read directly or through Flask's from_prefixed_env (`SECRET_KEY` -> FLASK_SECRET_KEY).
    The filename of these settings is empty: only the name is used."""
    found: dict[str, DataSetting] = {}
    for source in sources:
        for node in ast.walk(source.tree):
            if isinstance(node, ast.expr):
                variable, _ = _environ_read(node)
                if variable and _SECRET_NAME.search(variable):
                    seen = f"reads the environment variable {variable}"
                    clue = Clue(source.path, node.lineno, seen)
                    found.setdefault(variable, DataSetting(variable, "", clue))
        for key, line, prefix in _prefixed_config_keys(source):
            if _SECRET_NAME.search(key) and _variable(key):
                variable = f"{prefix}_{key}"
                seen = f"config {key} may be set by {variable}: from_prefixed_env()"
                found.setdefault(variable, DataSetting(variable, "", Clue(source.path, line, seen)))
    return list(found.values())


def _prefixed_config_keys(source: SourceFile) -> list[tuple[str, int, str]]:
    """Keys of `config.from_mapping(KEY=...)` when the file also calls from_prefixed_env."""
    prefix = None
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Call) and call_name(node.func) == "from_prefixed_env":
            prefix = (_literal(node.args[0]) if node.args else None) or "FLASK"
    if prefix is None:
        return []
    return [
        (keyword.arg, keyword.value.lineno, prefix)
        for node in ast.walk(source.tree)
        if isinstance(node, ast.Call) and call_name(node.func) == "from_mapping"
        for keyword in node.keywords
        if keyword.arg
    ]


# --- tasks before traffic -----------------------------------------------------------------


def flask_tasks(sources: list[SourceFile], app_module: str) -> list[Task]:
    """click commands that prepare the database (`@click.command("init-db")`), and
    Flask-Migrate's `db upgrade` when it is imported."""
    found: list[Task] = []
    flask = ("python", "-m", "flask", "--app", app_module)
    for source in sources:
        for node in ast.walk(source.tree):
            if isinstance(node, ast.FunctionDef):
                name = _click_command(node)
                if name is not None and _COMMAND_NAME.match(name) and _TASK_NAME.search(name):
                    clue = Clue(source.path, node.lineno, f"a click command `{name}`")
                    found.append(Task(name, (*flask, name), clue))
            elif isinstance(node, ast.ImportFrom) and node.module == "flask_migrate":
                clue = Clue(source.path, node.lineno, "imports flask_migrate (Flask-Migrate)")
                found.append(Task("db-upgrade", (*flask, "db", "upgrade"), clue))
    return found


def _click_command(node: ast.FunctionDef) -> str | None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and call_name(decorator.func) == "command":
            named = _literal(decorator.args[0]) if decorator.args else None
            return named or node.name.removesuffix("_command").replace("_", "-")
    return None


def project_tasks(root: Path, framework: Framework | None) -> list[Task]:
    """alembic.ini: `alembic upgrade head`; Django's manage.py: `migrate`."""
    found: list[Task] = []
    if (root / "alembic.ini").is_file():
        clue = Clue("alembic.ini", 0, "an Alembic configuration")
        found.append(Task("migrate", ("python", "-m", "alembic", "upgrade", "head"), clue))
    if framework is Framework.DJANGO and (root / "manage.py").is_file():
        clue = Clue("manage.py", 0, "Django's manage.py (migrations)")
        found.append(Task("migrate", ("python", "manage.py", "migrate", "--noinput"), clue))
    return found
