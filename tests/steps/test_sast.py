"""The `sast` step with the real bandit and semgrep, and Conveyor's shipped semgrep rules.

semgrep takes seconds to start, so the planted repository is scanned once per module.
"""

from __future__ import annotations

import json
import os
import subprocess
from importlib import resources
from importlib.metadata import version
from pathlib import Path

import pydantic
import pytest
import yaml

from conveyor.steps.sast import SastParams, SastStep
from steps.conftest import VENV_BIN, Outcome, run_step, tools_env, write_files

SQL_LINE = 7
VULNERABLE = """\
import sqlite3


def find_user(db_path, name):
    connection = sqlite3.connect(db_path)
    cursor = connection.cursor()
    cursor.execute(f"SELECT * FROM users WHERE name = '{name}'")
    return cursor.fetchall()
"""
SAFE = """\
import sqlite3


def find_user(db_path, name):
    connection = sqlite3.connect(db_path)
    cursor = connection.cursor()
    cursor.execute("SELECT * FROM users WHERE name = ?", (name,))
    return cursor.fetchall()
"""
HOOKS = 'def announce(event):\n    print("event", event)\n'
NO_PRINT_RULES = """\
rules:
  - id: shop.no-print
    languages: [python]
    severity: WARNING
    message: use the logger, not print
    pattern: print(...)
"""
SQL_RULE = "conveyor.python.sql-built-from-strings"


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """A SQL injection in app/ and in excluded legacy/, and a project rule of its own."""
    root = write_files(
        tmp_path_factory.mktemp("planted"),
        {
            "app/users.py": VULNERABLE,
            "app/hooks.py": HOOKS,
            "legacy/old_users.py": VULNERABLE,
            "rules/no-print.yml": NO_PRINT_RULES,
        },
    )
    params = {"rules": ["rules/no-print.yml"], "exclude": ["legacy/**"]}
    return run_step(SastStep(), params, root)


def test_a_sql_injection_is_found_by_semgrep_and_bandit_at_its_line(planted: Outcome) -> None:
    assert planted.ran.ok, planted.log.text
    where = f"app/users.py:{SQL_LINE}"
    assert ("semgrep", SQL_RULE, where) in planted.locations
    assert ("bandit", "B608", where) in planted.locations
    assert not planted.final.ok
    assert any(where in reason and "B608" in reason for reason in planted.gate_reasons)


def test_levels_come_from_the_rule_severity_and_bandits_severity(planted: Outcome) -> None:
    levels = {(f.tool, f.rule_id): f.level.value for f in planted.findings}
    assert levels[("semgrep", SQL_RULE)] == "error"
    assert levels[("bandit", "B608")] == "warning"  # bandit rates B608 MEDIUM


def test_the_projects_extra_rules_run_with_the_shipped_ones(planted: Outcome) -> None:
    assert ("semgrep", "shop.no-print", "app/hooks.py:2") in planted.locations


def test_excluded_files_are_neither_reported_nor_counted(planted: Outcome) -> None:
    assert not [f for f in planted.findings if (f.path or "").startswith("legacy/")]
    assert "sast: 2 files scanned" in planted.log.text


def test_the_sarif_has_a_run_per_tool_with_its_version(planted: Outcome) -> None:
    versions = {
        run["tool"]["driver"]["name"]: run["tool"]["driver"]["version"]
        for run in planted.sarif["runs"]
    }
    # semgrep lives in a venv of its own (.venv/tools/semgrep): ask the one on PATH,
    # without its check for a newer release (which waits on the network)
    semgrep = subprocess.run(
        [str(VENV_BIN / "semgrep"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "SEMGREP_ENABLE_VERSION_CHECK": "0"},
    )
    assert versions == {"bandit": version("bandit"), "semgrep": semgrep.stdout.strip()}


def test_a_clean_repository_passes(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/users.py": SAFE})

    outcome = run_step(SastStep(), {}, tmp_path)

    assert outcome.final.ok, outcome.log.text
    assert outcome.findings == []
    assert "gate sast: passed" in outcome.final.detail


def test_tools_selects_the_analysers(tmp_path: Path) -> None:
    write_files(tmp_path, {"users.py": VULNERABLE})

    outcome = run_step(SastStep(), {"tools": ["bandit"]}, tmp_path)

    assert outcome.locations == {("bandit", "B608", f"users.py:{SQL_LINE}")}
    assert [run["tool"]["driver"]["name"] for run in outcome.sarif["runs"]] == ["bandit"]


def test_bandit_skips_virtualenvs_in_the_workspace(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {"app/users.py": SAFE, ".venv/lib/site.py": VULNERABLE, "app/venv/x.py": VULNERABLE},
    )

    outcome = run_step(SastStep(), {"tools": ["bandit"]}, tmp_path)

    assert outcome.final.ok, outcome.log.text
    assert "sast: 1 files scanned, 0 findings" in outcome.log.text


def test_paths_matching_nothing_fail_the_job(tmp_path: Path) -> None:
    write_files(tmp_path, {"app/users.py": VULNERABLE})

    outcome = run_step(SastStep(), {"paths": ["src"]}, tmp_path)

    assert not outcome.ran.ok
    assert "sast: scanned no files" in outcome.ran.detail


def test_a_broken_rules_file_fails_the_job_with_semgreps_error(tmp_path: Path) -> None:
    write_files(tmp_path, {"users.py": SAFE, "rules.yml": "rules:\n  - id: x\n    pattern: [a\n"})

    outcome = run_step(SastStep(), {"rules": ["rules.yml"]}, tmp_path)

    assert not outcome.ran.ok
    assert outcome.ran.detail.startswith("semgrep failed (exited with code 7)")
    assert "Invalid YAML file rules.yml" in outcome.ran.detail
    assert outcome.evidence.published == []


def test_a_missing_tool_fails_with_the_install_hint(tmp_path: Path) -> None:
    write_files(tmp_path, {"users.py": SAFE})
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()

    params = {"tools": ["semgrep"], "tools_from": "path"}
    outcome = run_step(SastStep(), params, tmp_path, env=tools_env(str(empty_bin)))

    assert not outcome.ran.ok
    assert "semgrep is not installed on the job's PATH" in outcome.ran.detail
    assert "virtualenv of its own" in outcome.ran.detail
    assert "make .venv/bin/semgrep" in outcome.ran.detail


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"tools": ["bandit"], "rules": ["r.yml"]}, "add semgrep to `tools`"),
        ({"rules": ["../r.yml"]}, "must be a path inside the workspace"),
        ({"tools": ["pylint"]}, "'bandit' or 'semgrep'"),
        ({"tools": []}, "at least 1 item"),
        ({"exclude": ["legacy/{a"]}, "without its '}'"),
    ],
)
def test_bad_params_are_rejected(params: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        SastParams.model_validate(params)


# Each rule's `ruleid:` lines must be reported and its `ok:` lines must not (semgrep --test).
RULE_CASES = """\
import asyncio
import pickle
import subprocess
from subprocess import run as sprun

import httpx
import requests
import yaml
from yaml import SafeLoader


def queries(cursor, conn, name, rows):
    # ruleid: conveyor.python.sql-built-from-strings
    cursor.execute(f"SELECT * FROM t WHERE name = '{name}'")
    # ruleid: conveyor.python.sql-built-from-strings
    cursor.execute("SELECT * FROM t WHERE name = '%s'" % name)
    # ruleid: conveyor.python.sql-built-from-strings
    conn.execute("SELECT * FROM t WHERE name = '{}'".format(name))
    # ruleid: conveyor.python.sql-built-from-strings
    cursor.executemany("INSERT INTO " + name + " VALUES (?)", rows)
    query = "DELETE FROM t WHERE name = '" + name + "'"
    # ruleid: conveyor.python.sql-built-from-strings
    cursor.execute(query)
    # ok: conveyor.python.sql-built-from-strings
    cursor.execute("SELECT * FROM t WHERE name = ?", (name,))
    # ok: conveyor.python.sql-built-from-strings
    cursor.execute("SELECT * FROM t " + "WHERE 1")
    fixed = "SELECT 1"
    # ok: conveyor.python.sql-built-from-strings
    cursor.execute(fixed)


def shells(command):
    # ruleid: conveyor.python.subprocess-shell-from-variable
    subprocess.run(command, shell=True, check=True)
    # ruleid: conveyor.python.subprocess-shell-from-variable
    subprocess.check_output(f"ls {command}", shell=True)
    # ruleid: conveyor.python.subprocess-shell-from-variable
    sprun(command, shell=True)
    # ok: conveyor.python.subprocess-shell-from-variable
    subprocess.run("ls -l", shell=True)
    # ok: conveyor.python.subprocess-shell-from-variable
    subprocess.run(["ls", command], check=True)


def evals(code):
    # ruleid: conveyor.python.eval-of-non-literal
    eval(code)
    # ruleid: conveyor.python.eval-of-non-literal
    exec(code, {})
    # ok: conveyor.python.eval-of-non-literal
    eval("1 + 1")


def yamls(text):
    # ruleid: conveyor.python.yaml-load-unsafe
    yaml.load(text)
    # ruleid: conveyor.python.yaml-load-unsafe
    yaml.load(text, Loader=yaml.Loader)
    # ruleid: conveyor.python.yaml-load-unsafe
    yaml.unsafe_load(text)
    # ok: conveyor.python.yaml-load-unsafe
    yaml.load(text, Loader=yaml.SafeLoader)
    # ok: conveyor.python.yaml-load-unsafe
    yaml.load(text, Loader=SafeLoader)
    # ok: conveyor.python.yaml-load-unsafe
    yaml.load(text, yaml.CSafeLoader)
    # ok: conveyor.python.yaml-load-unsafe
    yaml.safe_load(text)


def pickles(blob, handle):
    # ruleid: conveyor.python.pickle-load
    pickle.loads(blob)
    # ruleid: conveyor.python.pickle-load
    pickle.load(handle)
    # ok: conveyor.python.pickle-load
    pickle.dumps(blob)


def tls(url):
    # ruleid: conveyor.python.tls-verify-disabled
    requests.get(url, verify=False)
    # ruleid: conveyor.python.tls-verify-disabled
    requests.post(url, data={}, verify=False, timeout=5)
    # ruleid: conveyor.python.tls-verify-disabled
    httpx.get(url, verify=False)
    # ok: conveyor.python.tls-verify-disabled
    requests.get(url, timeout=5)


def serve(app, main):
    # ruleid: conveyor.python.app-run-debug
    app.run(host="0.0.0.0", debug=True)
    # ok: conveyor.python.app-run-debug
    app.run(debug=False)
    # ok: conveyor.python.app-run-debug
    asyncio.run(main(), debug=True)
"""


def shipped_rules() -> tuple[str, list[dict[str, object]]]:
    text = resources.files("conveyor.steps.rules").joinpath("semgrep-python.yml").read_text()
    return text, yaml.safe_load(text)["rules"]


def test_every_shipped_rule_has_a_message_a_severity_and_a_cwe() -> None:
    _, rules = shipped_rules()
    for rule in rules:
        assert str(rule["id"]).startswith("conveyor.python."), rule
        assert rule["message"] and rule["severity"] in {"ERROR", "WARNING", "INFO"}, rule["id"]
        cwe = rule["metadata"]["cwe"]  # type: ignore[index]
        assert cwe and all(str(entry).startswith("CWE-") for entry in cwe), rule["id"]


def test_the_shipped_rules_pass_their_semgrep_tests(tmp_path: Path) -> None:
    text, rules = shipped_rules()
    write_files(tmp_path, {"semgrep-python.yml": text, "semgrep-python.py": RULE_CASES})

    done = subprocess.run(
        [
            VENV_BIN / "semgrep",
            "--test",
            "--json",
            "--metrics=off",
            "--disable-version-check",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=tools_env(),
        check=False,
    )

    report = json.loads(done.stdout)
    assert report["config_with_errors"] == []
    checks = next(iter(report["results"].values()))["checks"]
    assert set(checks) == {rule["id"] for rule in rules}
    failing = {rule: check["matches"] for rule, check in checks.items() if not check["passed"]}
    assert failing == {}
    assert done.returncode == 0, done.stderr
