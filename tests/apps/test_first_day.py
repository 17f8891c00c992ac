"""A team's first day: a third-party Flask app and a FastAPI app, each copied into a git
repository of its own on `main`, taken by `conveyor init` and `conveyor run` to staging,
where the app answers through staging's router.

The test makes only the decisions a user must make, and nothing else: it imports a
vulnerability database (as `conveyor init` says to), gives each secret the generated file
names a value, and for each finding a gate blocks on, writes a waiver (a decision per
finding) and commits it. Every other step is Conveyor's: the project's own virtualenv for
its tests, the image with its whole dependency closure and its server, the hooks, the
router. Production waits for a reviewer's approval, so the run is asked for staging
(`--job deploy-staging`: the job and everything it needs).
"""

from __future__ import annotations

import datetime
import json
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import GIT_ENV, CliProcess
from fixture_apps import FASTAPI_TODO, FLASK_NOTES, copy_app

OSV_SAMPLE = Path(__file__).resolve().parents[1] / "data" / "osv"
RUN_SECONDS = 900
MAX_RUNS = 3  # the first run shows the findings; one more with the waivers must pass


def _git(repository: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repository, env={**GIT_ENV}, check=True, timeout=60)


def _cli(start: Callable[..., CliProcess], repository: Path, *args: str) -> tuple[int, str, str]:
    """Exit code, standard output, and both outputs together (for failure messages)."""
    process = start(list(args), repository)
    code = process.finish(timeout=RUN_SECONDS)
    out, err = process.outputs
    return code, out, f"{out}\n{err}"


def _fresh_advisories(folder: Path) -> Path:
    """Today's database: the sample (2024) and one advisory modified today, as an import
    of a current database would have."""
    folder.mkdir()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    (folder / "today.yaml").write_text(
        f"id: TEST-TODAY-1\nmodified: {now!r}\naffected:\n"
        "- package: {ecosystem: PyPI, name: a-package-no-one-uses}\n"
        "  ranges:\n  - type: ECOSYSTEM\n    events: [{introduced: '0'}, {fixed: '1.0'}]\n"
    )
    return folder


def _waive_what_blocked(
    start: Callable[..., CliProcess], repository: Path, run_id: int
) -> list[str]:
    """A waiver per finding a gate blocked on (the user's decision), committed."""
    code, out, both = _cli(start, repository, "report", str(run_id), "-o", "json")
    assert code == 0, both
    report = json.loads(out)
    blocking = [
        finding
        for finding in report["findings"]
        if finding["disposition"] in ("new", "expired-waiver") and finding["level"] == "error"
    ]
    exceptions = repository / ".conveyor" / "exceptions.yml"
    entries = [
        f"  - fingerprint: {finding['fingerprint']}\n"
        f"    reason: reviewed on the first day ({finding['rule_id']} in {finding['path']})\n"
        "    owner: ada@example.org\n"
        f"    expires: {datetime.date.today() + datetime.timedelta(days=30)}\n"
        for finding in blocking
    ]
    if entries:
        old = exceptions.read_text() if exceptions.exists() else "exceptions:\n"
        exceptions.write_text(old + "".join(entries))
        _git(repository, "add", ".conveyor/exceptions.yml")
        _git(repository, "commit", "-q", "-m", "waive the findings reviewed on the first day")
    return [finding["fingerprint"] for finding in blocking]


@pytest.fixture
def stop_staging(start_cli: Callable[..., CliProcess]) -> Iterator[list[Path]]:
    repositories: list[Path] = []
    yield repositories
    for repository in repositories:
        start_cli(["env", "stop", "staging"], repository).finish(timeout=120)


@pytest.mark.real
@pytest.mark.timeout(2 * RUN_SECONDS)
@pytest.mark.parametrize(("name", "page"), [(FLASK_NOTES, "/"), (FASTAPI_TODO, "/items")])
def test_init_then_run_reaches_staging(
    tmp_path: Path,
    start_cli: Callable[..., CliProcess],
    stop_staging: list[Path],
    name: str,
    page: str,
) -> None:
    repository = copy_app(name, tmp_path)
    _git(repository, "init", "-q", "-b", "main")

    code, out, both = _cli(start_cli, repository, "init", "--explain", "-o", "json")
    assert code == 0, both
    written = json.loads(out)
    assert written["complete"] is True, written
    for advisories in (_sample(), _fresh_advisories(tmp_path / "osv")):
        code, _, both = _cli(start_cli, repository, "vulndb", "import", str(advisories))
        assert code == 0, both
    secrets = [row["value"] for row in written["findings"] if row["what"] == "secret"]
    # The user's values (docs/environments.md#secrets); never committed: the state
    # folder ignores itself.
    secrets_file = repository / ".conveyor" / "secrets.env"
    secrets_file.write_text("".join(f"{secret}=first-day-{secret.lower()}\n" for secret in secrets))
    secrets_file.chmod(0o600)  # Conveyor refuses a secrets file others can read
    _git(repository, "add", "-A")
    _git(repository, "commit", "-q", "-m", "conveyor init")
    stop_staging.append(repository)

    outcomes: list[str] = []
    for attempt in range(1, MAX_RUNS + 1):
        code, _, both = _cli(start_cli, repository, "run", "--job", "deploy-staging", "-q")
        outcomes.append(both)
        if code == 0:
            break
        waived = _waive_what_blocked(start_cli, repository, run_id=attempt)
        assert waived, f"run {attempt} failed, and not on a finding to decide:\n{both}"
    assert code == 0, "\n\n".join(outcomes)

    code, out, both = _cli(start_cli, repository, "env", "ls", "-o", "json")
    assert code == 0, both
    views = {view["name"]: view for view in json.loads(out)}
    url = views["staging"]["url"]
    with urllib.request.urlopen(f"{url}{page}", timeout=30) as response:
        assert response.status == 200
        body = response.read()
    if name == FASTAPI_TODO:
        assert json.loads(body) == []
    else:
        assert b"<h1>Notes</h1>" in body, body[:200]


def _sample() -> Path:
    (tarball,) = sorted(OSV_SAMPLE.glob("*.tar.gz"))
    return tarball
