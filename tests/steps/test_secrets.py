"""The `secrets` step with the real detect-secrets, over a real git repository."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conveyor.engine.executors.base import ExecResult
from conveyor.engine.executors.local import LocalExecutor
from conveyor.engine.step import NoEvidence, StepContext
from conveyor.steps.findings_step import raw_findings_path
from conveyor.steps.secrets import SecretsParams, SecretsStep, parse_added_lines
from steps.conftest import Lines

AWS_KEY = "AKIAZ7Q3K5N2P4R6T8VW"
PASSWORD = "Tr0ub4dor-horse-93"
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
}
CLEAN_APP = "def total(items):\n    return sum(items)\n"
LEAKY_SETTINGS = f'DEBUG = False\nAWS_ACCESS_KEY_ID = "{AWS_KEY}"\ndb_password = "{PASSWORD}"\n'


@dataclass
class Repo:
    root: Path

    def git(self, *args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(self.root), *args],
            check=True,
            text=True,
            capture_output=True,
            env={**os.environ, **GIT_ENV},
        )
        return done.stdout.strip()

    def commit(self, files: dict[str, str | None], message: str = "change") -> str:
        """Write (or, for None, delete) files, commit them, return the new HEAD."""
        for name, content in files.items():
            path = self.root / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    made = Repo(tmp_path / "repo")
    made.root.mkdir()
    made.git("init", "-q", "-b", "main")
    made.commit({"app/cart.py": CLEAN_APP, "README.md": "# shop\n"}, "first")
    return made


@dataclass
class Outcome:
    result: ExecResult
    log: Lines
    evidence: NoEvidence
    workspace: Path

    def report(self, kind: str) -> Any:
        return json.loads(next(c for k, c, _ in self.evidence.published if k == kind))

    @property
    def results(self) -> list[dict[str, Any]]:
        return [r for run in self.report("sarif")["runs"] for r in run["results"]]

    def located(self) -> set[tuple[str, str, int]]:
        return {(r["ruleId"], *where(r)) for r in self.results}

    def everything_written(self) -> str:
        raw = (self.workspace / raw_findings_path("secrets")).read_text()
        published = "\n".join(c.decode() for _, c, _ in self.evidence.published)
        return "\n".join([raw, published, self.log.text, self.result.detail])


def where(result: dict[str, Any]) -> tuple[str, int]:
    location = result["locations"][0]["physicalLocation"]
    return location["artifactLocation"]["uri"], location["region"]["startLine"]


def scan(workspace: Path, previous: str | None = None, **params: Any) -> Outcome:
    env = {
        **os.environ,
        **GIT_ENV,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("CONVEYOR_PREVIOUS_SHA", None)
    if previous is not None:
        env["CONVEYOR_PREVIOUS_SHA"] = previous
    log, evidence = Lines(), NoEvidence()
    ctx = StepContext(
        job_id="secrets",
        workspace=workspace,
        env=env,
        timeout=60,
        executor=LocalExecutor(),
        log=log,
        evidence=evidence,
    )
    step, model = SecretsStep(), SecretsParams(**params)

    async def both() -> ExecResult:
        ran = await step.run(model, ctx)
        return await step.finalize(model, ctx, ran)

    return Outcome(asyncio.run(both()), log, evidence, workspace)


def test_planted_secrets_are_found_at_their_lines_and_never_written_out(repo: Repo) -> None:
    repo.commit({"app/settings.py": LEAKY_SETTINGS})
    outcome = scan(repo.root)
    assert not outcome.result.ok
    assert outcome.located() == {
        ("AWS Access Key", "app/settings.py", 2),
        ("Secret Keyword", "app/settings.py", 3),
    }
    assert all(r["level"] == "error" for r in outcome.results)
    assert "possible AWS Access Key committed" in outcome.log.text
    written = outcome.everything_written()
    assert AWS_KEY not in written and PASSWORD not in written
    assert all(
        "snippet" not in r["locations"][0]["physicalLocation"]["region"] for r in outcome.results
    )


def test_a_clean_repository_passes(repo: Repo) -> None:
    outcome = scan(repo.root)
    assert outcome.result.ok, outcome.result.detail
    assert outcome.results == []
    assert "2 files scanned" in outcome.log.text


def test_untracked_files_count_and_conveyor_out_and_ignored_files_do_not(repo: Repo) -> None:
    repo.commit({".gitignore": "*.local\n"})
    (repo.root / "notes.txt").write_text(f'password = "{PASSWORD}"\n')
    (repo.root / "deploy.local").write_text(f'password = "{PASSWORD}"\n')
    (repo.root / ".conveyor-out" / "lint").mkdir(parents=True)
    (repo.root / ".conveyor-out" / "lint" / "x.py").write_text(f'password = "{PASSWORD}"\n')
    outcome = scan(repo.root)
    assert outcome.located() == {("Secret Keyword", "notes.txt", 1)}


def test_a_secret_added_and_removed_within_the_range_is_reported_with_its_commit(
    repo: Repo,
) -> None:
    since = repo.git("rev-parse", "HEAD")
    repo.commit({"app/cart.py": CLEAN_APP + "# cleanup later\n"}, "unrelated")
    leaked = repo.commit({"app/settings.py": LEAKY_SETTINGS}, "add settings")
    repo.commit({"app/settings.py": "DEBUG = False\n"}, "oops, remove the keys")
    outcome = scan(repo.root, previous=since)
    assert not outcome.result.ok
    assert outcome.located() == {
        ("AWS Access Key", "app/settings.py", 2),
        ("Secret Keyword", "app/settings.py", 3),
    }
    assert {r["properties"]["commit"] for r in outcome.results} == {leaked}
    assert f"committed in {leaked[:12]}" in outcome.log.text
    assert AWS_KEY not in outcome.everything_written()
    assert not (repo.root / ".conveyor-out" / "secrets" / "history").exists()
    # Without a previous run only HEAD's own commit counts, and it only removed them.
    assert scan(repo.root).result.ok


def test_a_secret_committed_twice_is_reported_where_it_first_came_in(repo: Repo) -> None:
    since = repo.git("rev-parse", "HEAD")
    first = repo.commit({"ops/env.sh": f'password="{PASSWORD}"\n'})
    repo.commit({"ops/env.sh": None})
    repo.commit({"ops/env.sh": f'\n\npassword="{PASSWORD}"\n'})
    repo.commit({"ops/env.sh": None})
    outcome = scan(repo.root, previous=since)
    assert outcome.located() == {("Secret Keyword", "ops/env.sh", 1)}
    assert outcome.results[0]["properties"]["commit"] == first


def test_a_secret_still_in_the_tree_is_reported_once(repo: Repo) -> None:
    since = repo.git("rev-parse", "HEAD")
    repo.commit({"app/settings.py": LEAKY_SETTINGS})
    outcome = scan(repo.root, previous=since)
    assert len(outcome.results) == 2
    assert all("commit" not in r["properties"] for r in outcome.results)


def test_an_unknown_previous_commit_falls_back_to_head(repo: Repo) -> None:
    repo.commit({"app/settings.py": LEAKY_SETTINGS})
    repo.commit({"app/settings.py": None})
    outcome = scan(repo.root, previous="0123456789abcdef0123456789abcdef01234567")
    assert outcome.result.ok
    assert "is not in this repository; scanned HEAD only" in outcome.log.text


def test_commits_false_leaves_the_history_alone(repo: Repo) -> None:
    since = repo.git("rev-parse", "HEAD")
    repo.commit({"app/settings.py": LEAKY_SETTINGS})
    repo.commit({"app/settings.py": None})
    assert scan(repo.root, previous=since, commits=False).result.ok


def test_paths_limit_the_scan_to_a_folder(repo: Repo) -> None:
    repo.commit({"app/settings.py": LEAKY_SETTINGS, "ops/env.sh": f'password="{PASSWORD}"\n'})
    outcome = scan(repo.root, paths=["ops"])
    assert outcome.located() == {("Secret Keyword", "ops/env.sh", 1)}


def test_a_secret_in_a_test_fixture_says_how_to_mark_it(repo: Repo) -> None:
    repo.commit(
        {"tests/conftest.py": f'password = "{PASSWORD}"\n', "app/settings.py": LEAKY_SETTINGS}
    )

    messages = {where(r)[0]: r["message"]["text"] for r in scan(repo.root).results}

    assert "end its line with `# pragma: allowlist secret`" in messages["tests/conftest.py"]
    assert "pragma" not in messages["app/settings.py"]


def test_a_fixture_line_marked_with_the_pragma_is_not_reported(repo: Repo) -> None:
    marked = f'password = "{PASSWORD}"  # pragma: allowlist secret\n'
    since = repo.git("rev-parse", "HEAD")
    repo.commit({"tests/conftest.py": marked})

    outcome = scan(repo.root, previous=since)

    assert outcome.result.ok, outcome.log.text
    assert outcome.results == []


def test_conveyors_policy_files_are_not_scanned(repo: Repo) -> None:
    """Their fingerprints are hex digests, which detect-secrets takes for keys."""
    accepted = "".join(
        f"      - {{fingerprint: {os.urandom(16).hex()}, tool: ruff, rule: F401}}\n"
        for _ in range(3)
    )
    baseline = (
        "baseline:\n  - accepted: 2026-12-07\n    owner: dana\n    reason: first day\n"
        f"    findings:\n{accepted}"
    )
    waiver = (
        f"exceptions:\n  - {{fingerprint: {os.urandom(16).hex()}, reason: a fixture, "
        "owner: dana, expires: 2099-01-01}\n"
    )
    since = repo.git("rev-parse", "HEAD")
    repo.commit({".conveyor/baseline.yml": baseline, ".conveyor/exceptions.yml": waiver})

    outcome = scan(repo.root, previous=since)

    assert outcome.result.ok, outcome.log.text


def test_the_fingerprint_survives_lines_inserted_above(repo: Repo) -> None:
    repo.commit({"app/settings.py": LEAKY_SETTINGS})
    before = {r["ruleId"]: r for r in scan(repo.root).results}
    repo.commit({"app/settings.py": "import os\n\n\n" + LEAKY_SETTINGS})
    after = {r["ruleId"]: r for r in scan(repo.root).results}
    for rule in ("AWS Access Key", "Secret Keyword"):
        assert where(after[rule])[1] == where(before[rule])[1] + 3
        assert after[rule]["partialFingerprints"] == before[rule]["partialFingerprints"]
    assert (
        before["AWS Access Key"]["partialFingerprints"]
        != (before["Secret Keyword"]["partialFingerprints"])
    )


def test_added_lines_are_read_with_their_new_line_numbers() -> None:
    log = "\n".join(
        [
            "\x1eabc123",
            "diff --git a/app/x.py b/app/x.py",
            "--- a/app/x.py",
            "+++ b/app/x.py",
            "@@ -2,0 +3,2 @@ def f():",
            "+key = 1",
            "++++ not a header",
            "@@ -9 +10,0 @@",
            "-gone",
            "diff --git a/old.txt b/old.txt",
            "deleted file mode 100644",
            "--- a/old.txt",
            "+++ /dev/null",
            "@@ -1 +0,0 @@",
            "-bye",
            "diff --git a/new b/new",
            "--- /dev/null",
            '+++ "b/we\\"ird\\tname"',
            "@@ -0,0 +1 @@",
            "+hello",
        ]
    )
    assert parse_added_lines(log) == {
        ("abc123", "app/x.py"): {3: "key = 1", 4: "+++ not a header"},
        ("abc123", 'we"ird\tname'): {1: "hello"},
    }
