"""The `conveyor.yml` that `conveyor init` writes, from what it detected in the folder.

A Python web app gets the whole delivery flow: the gates, its tests with coverage in its
own virtualenv, an image served by a production server (uvicorn for ASGI, gunicorn for
WSGI), its scan and signature, staging, and a production canary behind an approval. A
folder it does not understand gets a minimal file (the gates only) and the list of what
was not found. Every value taken from the folder is either checked against a narrow
pattern by the detection or quoted here, so a hostile file name cannot write YAML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from conveyor.spec.detect.model import (
    DependencyKind,
    Detection,
    Framework,
    Interface,
)

PORT = 8000
# The app listens on every address of its replica: under podman the router reaches it from
# outside the container; under the process runtime the port is private to the host anyway.
# Where the runtime tells a replica to listen (HOST and PORT in its environment), expanded
# in the entrypoint when it runs (docs/images.md#variables-in-the-command).
HOST_REFERENCE = "$(HOST)"
PORT_REFERENCE = "$(PORT)"
SERVERS = {  # the production server of each interface, and the requirement that adds it
    Interface.ASGI: ("uvicorn", "uvicorn>=0.30"),
    Interface.WSGI: ("gunicorn", "gunicorn>=22"),
}
DATA_DIR = "/data"  # where a release sees its environment's data folder
_PLAIN = re.compile(r"^[A-Za-z_/.-][A-Za-z0-9_./-]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}

HEADER = """\
# conveyor.yml for {name}, written by `conveyor init` from what it found in this folder
# (`conveyor init --explain` lists each finding with its file and line).
# `conveyor lint` checks it, `conveyor plan` shows what would run and why, `conveyor run`
# runs it. Editors: `conveyor schema` prints the JSON Schema (yaml-language-server).
version: 1
name: {name}

env:
  PYTHONDONTWRITEBYTECODE: "1"   # no __pycache__ in the shared checkout

defaults:
  timeout: 10m
"""


def comment(text: object) -> str:
    """Text for a `# ...` comment: one line, printable (it may quote the project's files)."""
    return "".join(c if c.isprintable() else "?" for c in str(text))[:200]


def scalar(value: str) -> str:
    """A YAML scalar for `value`: plain when that is unambiguous, else double-quoted."""
    if _PLAIN.match(value) and value != "-" and value.lower() not in _YAML_WORDS:
        return value
    return json.dumps(value)


def flow(values: Iterable[str]) -> str:
    return "[" + ", ".join(scalar(v) for v in values) + "]"


def render(found: Detection, project: Path) -> str:
    """The file for a detected project; `project` is its folder (to list files that exist)."""
    if not found.is_web_app:
        return render_minimal(found, project)
    return "\n".join(
        [
            HEADER.format(name=found.name),
            _images(),
            "jobs:",
            _gates(found, project),
            _tests(found, project),
            _image(found, project),
            _delivery(),
            _environments(found),
        ]
    )


def render_minimal(found: Detection, project: Path) -> str:
    """The gates over the whole folder: what runs on any project."""
    missing = "".join(f"#   - {comment(note)}\n" for note in (*found.notes, *found.problems))
    return (
        "\n".join(
            [
                HEADER.format(name=found.name),
                "# Not a Python web app conveyor init could understand; it did not find:\n"
                + missing
                + "# so this file runs the gates (and the tests, if any) only. Add jobs\n"
                "# (docs/conveyor-yml.md), or run `conveyor init --force` once the project has\n"
                "# what is missing.\n"
                "jobs:",
                _gates(found, project),
                _tests(found, project) if found.tests and found.main_dependencies else "",
            ]
        ).rstrip("\n")
        + "\n"
    )


def _images() -> str:
    return """\
images:
  # scan-image reads the offline vulnerability database (`conveyor vulndb import FILE`);
  # sign uses .conveyor/keys/conveyor.key (`conveyor init` made it). Every deploy admits
  # only images signed by this key, built on main and scanned clean.
  admission:
    trusted_keys: [.conveyor/keys/conveyor.pub]
    allowed_repositories: ["**"]   # globs on the source repository's URL (its origin)
    allowed_branches: [main]
    max_db_age: 7d                 # the scan's advisories may be at most this old
"""


def _existing(project: Path, *names: str) -> list[str]:
    return [name for name in names if (project / name).is_file()]


def _source_paths(found: Detection) -> list[str]:
    if found.import_root != ".":
        return [found.import_root]
    return [found.package.value] if found.package is not None else ["."]


def _gates(found: Detection, project: Path) -> str:
    sources = _source_paths(found)
    tests = [found.tests.folder] if found.tests and found.tests.folder != "." else []
    config = _existing(project, "pyproject.toml", "ruff.toml", ".ruff.toml")
    code_globs = [f"{p}/**/*.py" if p != "." else "**/*.py" for p in sources + tests]
    return f"""\
  # The gates: Conveyor's own linters and scanners over the code. A finding blocks when it
  # is new against main's last green run; waive one in .conveyor/exceptions.yml, with an
  # owner, a reason and an expiry (docs/gates.md).
  lint:
    uses: lint
    with: {{paths: {flow(sources + tests)}}}
    inputs: {flow(code_globs + config)}
    timeout: 3m

  sast:
    uses: sast
    with: {{paths: {flow(sources)}}}
    inputs: {flow(code_globs[: len(sources)])}
    timeout: 5m

  secrets:
    uses: secrets
    inputs: ["**"]
    timeout: 3m
"""


def _dependency_files(found: Detection) -> list[str]:
    main = found.main_dependencies
    files = [main.path] if main is not None else []
    if found.tests is not None:
        files += [f for f in found.tests.requirements if f not in files]
    return files


def _tests(found: Detection, project: Path) -> str:
    if found.tests is None:
        return "  # no tests found: add a `test` job when there are some (docs/gates.md)\n"
    setup = found.tests
    files = _dependency_files(found) or ["pyproject.toml"]
    extras = f"\n        extras: {flow(setup.extras)}" if setup.extras else ""
    path = f"\n        pythonpath: {flow([found.import_root])}" if found.import_root != "." else ""
    inputs = [f"{p}/**" for p in _source_paths(found) if p != "."] + [f"{setup.folder}/**"]
    inputs += [f for f in files if f not in inputs]
    inputs += _existing(project, "pytest.ini", "conftest.py", "setup.cfg", "tox.ini")
    return f"""\
  # The project's tests with line coverage, in the project's own virtualenv: made once
  # from these files (and pytest, pytest-cov), kept under .conveyor/envs by their digest.
  test:
    uses: test
    with:
      command: {flow(setup.command)}
      source: {flow(_source_paths(found))}
      venv:
        dependencies: {flow(files)}{extras}{path}
    inputs: {flow(sorted(set(inputs), key=inputs.index))}
    timeout: 10m
"""


def server_command(found: Detection) -> list[str]:
    """The image's entrypoint: the app under its production server, on PORT."""
    assert found.app is not None and found.framework is not None
    app = found.app
    # A src layout: the server imports the app from there (the image's PYTHONPATH is its
    # dependencies' folder, which an `env:` PYTHONPATH would replace).
    src = found.import_root != "."
    if found.framework.interface is Interface.ASGI:
        options = ["--factory"] if app.factory else []
        options += ["--app-dir", found.import_root] if src else []
        target = f"{app.module}:{app.attribute}"
        listen = ["--host", HOST_REFERENCE, "--port", PORT_REFERENCE]
        return ["python", "-m", "uvicorn", target, *options, *listen]
    options = ["--chdir", found.import_root] if src else []
    return [
        "python",
        "-m",
        "gunicorn",
        *options,
        "-b",
        f"{HOST_REFERENCE}:{PORT_REFERENCE}",
        str(app),
    ]


def server_package(found: Detection) -> str | None:
    """The server's requirement, unless the project's dependencies already name it."""
    assert found.framework is not None
    name, requirement = SERVERS[found.framework.interface]
    main = found.main_dependencies
    return None if main is not None and name in main.names else requirement


def _image_files(found: Detection, project: Path) -> list[str]:
    files = [f"{p}/**" for p in _source_paths(found) if p != "."] or ["**/*.py"]
    files += _existing(project, "pyproject.toml")
    if found.framework is Framework.DJANGO:
        files += _existing(project, "manage.py")
    if (project / "alembic.ini").is_file():
        files += ["alembic.ini", "alembic/**", "migrations/**"]
    main = found.main_dependencies
    if main is not None and main.path not in files:
        files.append(main.path)
    return files


def _image(found: Detection, project: Path) -> str:
    main = found.main_dependencies
    if main is None or main.kind is DependencyKind.PYPROJECT:
        deps = "      # dependencies: pyproject.toml's [project] dependencies (the default)\n"
    else:
        deps = f"      requirements: {scalar(main.path)}\n"
    package = server_package(found)
    if package is not None:
        name = package.split(">")[0]
        deps += f"      packages: [{scalar(package)}]   # {name}: the app does not depend on it\n"
    server = SERVERS[found.framework.interface][0] if found.framework else "the server"
    files = _image_files(found, project)
    tests = [found.tests.folder] if found.tests else []
    return f"""\
  # The image: the app and its dependencies' whole closure on Conveyor's Python base image,
  # served by {server}. Every green commit builds one, tagged with the commit.
  image:
    needs: [lint, sast, secrets{", test" if tests else ""}]
    uses: build-image
    with:
      repository: {found.name}
{deps}      app: {flow(files)}
      entrypoint: {flow(server_command(found))}
      env: {{PYTHONUNBUFFERED: "1"}}   # log lines reach the log as they are written
      port: {PORT}
    inputs: {flow(files)}
    timeout: 10m
"""


def _delivery() -> str:
    return """\
  scan-image:
    needs: [image]
    uses: scan-image

  sign:
    needs: [scan-image]
    uses: sign

  # Continuous delivery: every green commit on main goes to staging, then to production,
  # which takes only digests that passed staging, after a reviewer's approval.
  deploy-staging:
    needs: [sign]
    uses: deploy
    with: {environment: staging}
    rules:
      - branch: [main]

  deploy-production:
    needs: [deploy-staging]
    uses: deploy
    with: {environment: production}
    rules:
      - branch: [main]
"""


def _environments(found: Detection) -> str:
    shared = _environment_body(found)
    return f"""\
# Where releases run: the `process` runtime (the image's own interpreter, its root file
# system read-only, the environment's data folder at {DATA_DIR}) behind the `builtin` router;
# each gets a free port at its first deploy and keeps it (`conveyor env ls`).
environments:
  staging:
{shared}
  production:
    after: staging          # a digest must have passed staging first
    replicas: 2
    # Someone other than the commit's author accepts the release (`conveyor users add`).
    approval: {{required: 1, roles: [reviewer], timeout: 24h}}
{shared}    # A new version serves 10 %, then 50 % of the traffic beside a baseline of the
    # stable one; the judge compares them and rolls back on evidence of harm
    # (docs/releases.md; what it can detect at your traffic: docs/analysis.md).
    strategy:
      canary: {{}}
"""


def _environment_body(found: Detection) -> str:
    lines: list[str] = []
    if found.health is not None:
        path = scalar(found.health.value)
        lines += [
            "    health:",
            f"      readiness: {{path: {path}, interval: 500ms}}   # {comment(found.health.clue)}",
            f"      liveness: {{path: {path}}}",
        ]
    else:
        lines += [
            "    health:  # no health route found: ready once the port accepts a connection",
            "      readiness: {interval: 500ms}",
        ]
    variables = [(d.variable, f"{DATA_DIR}/{d.filename}", comment(d.clue)) for d in found.data]
    if variables:
        lines.append("    env:   # the data folder survives releases (docs/environments.md)")
        lines += [f"      {name}: {scalar(value)}   # {why}" for name, value, why in variables]
    if found.secrets:
        names = flow(s.variable for s in found.secrets)
        lines.append(f"    secrets: {names}   # values: docs/environments.md#secrets")
    if found.tasks:
        lines.append("    hooks:")
        lines.append("      before_traffic:   # once per release, before it gets traffic")
        for task in found.tasks:
            lines += [
                f"        - name: {scalar(task.name)}   # {comment(task.clue)}",
                f"          command: {flow(task.command)}",
                "          timeout: 2m",
            ]
    smoke = [found.health.value] if found.health else []
    if found.home is not None:
        smoke.append(found.home.value)
    if smoke:
        lines.append("    smoke:   # after each deploy, through the router; a failure rolls back")
        lines += [f"      - http: {scalar(path)}" for path in smoke]
    return "\n".join(lines) + "\n"
