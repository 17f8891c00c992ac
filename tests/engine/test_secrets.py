import os
import subprocess
from pathlib import Path

import pytest

from conveyor.engine.secrets import (
    SECRETS_FILE,
    environment_secrets_file,
    load_secrets,
    parse_dotenv,
    without_secrets,
)
from conveyor.errors import ConveyorError
from conveyor.spec.environments import scoped_secret_variable


def write_secrets(root: Path, text: str, mode: int = 0o600) -> Path:
    path = root / SECRETS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_environment_wins_over_the_secrets_file(tmp_path: Path) -> None:
    write_secrets(tmp_path, "TOKEN=from-file\nOTHER=file-only\n")
    secrets = load_secrets(
        ["TOKEN", "OTHER"], root=tmp_path, environ={"TOKEN": "from-env"}, job="deploy"
    )
    assert secrets == {"TOKEN": "from-env", "OTHER": "file-only"}


def test_only_the_named_secrets_are_returned(tmp_path: Path) -> None:
    write_secrets(tmp_path, "A=1\nB=2\n")
    assert load_secrets(["B"], root=tmp_path, environ={"A": "env"}) == {"B": "2"}


def test_file_is_not_needed_when_the_environment_has_everything(tmp_path: Path) -> None:
    # A world-readable file would be refused, but it is never opened.
    write_secrets(tmp_path, "TOKEN=x\n", mode=0o644)
    assert load_secrets(["TOKEN"], root=tmp_path, environ={"TOKEN": "env"}) == {"TOKEN": "env"}


def test_dotenv_syntax() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            "PLAIN=value",
            "export EXPORTED=exp",
            "SINGLE='it is $literal # not a comment'",
            'DOUBLE="line1\\nline2 \\"q\\" \\\\ # kept"',
            "SPACED = padded value   # trailing comment",
            "HASH=abc#def",
            "EMPTY=",
            "QUOTED_COMMENT='v'  # c",
            'MULTI="a',
            'b"',
            "  INDENTED=yes\r",
            "PLAIN=later wins",
        ]
    )
    assert parse_dotenv(text, source="secrets.env") == {
        "PLAIN": "later wins",
        "EXPORTED": "exp",
        "SINGLE": "it is $literal # not a comment",
        "DOUBLE": 'line1\nline2 "q" \\ # kept',
        "SPACED": "padded value",
        "HASH": "abc#def",
        "EMPTY": "",
        "QUOTED_COMMENT": "v",
        "MULTI": "a\nb",
        "INDENTED": "yes",
    }


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("OK=1\nthis is not an assignment-hunter2\n", 2),
        ("OK=1\n\nBAD='hunter2' trailing\n", 3),
        ('A=1\nUNCLOSED="hunter2\n', 2),
        ("1BAD=hunter2", 1),
    ],
)
def test_parse_errors_name_file_and_line_but_not_the_value(text: str, line: int) -> None:
    with pytest.raises(ConveyorError) as caught:
        parse_dotenv(text, source="/p/secrets.env")
    assert f"/p/secrets.env:{line}:" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in (caught.value.hint or "")


def test_missing_secret_names_secret_job_and_both_places(tmp_path: Path) -> None:
    write_secrets(tmp_path, "PRESENT=hunter2\n")
    with pytest.raises(ConveyorError) as caught:
        load_secrets(
            ["PRESENT", "DEPLOY_KEY"], root=tmp_path, environ={"OTHER": "pa55word"}, job="ship"
        )
    message = caught.value.message
    assert "DEPLOY_KEY" in message
    assert "ship" in message
    assert "environment variable DEPLOY_KEY" in message
    assert str(tmp_path / SECRETS_FILE) in message
    for value in ("hunter2", "pa55word"):
        assert value not in message
        assert value not in (caught.value.hint or "")


def test_missing_secret_without_a_file_says_the_file_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError, match="does not exist"):
        load_secrets(["TOKEN"], root=tmp_path, environ={})


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_secrets_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    write_secrets(tmp_path, "TOKEN=x\n", mode=mode)
    with pytest.raises(ConveyorError) as caught:
        load_secrets(["TOKEN"], root=tmp_path, environ={})
    assert "chmod 600" in (caught.value.hint or "")


def test_secrets_file_tracked_by_git_is_refused(tmp_path: Path) -> None:
    path = write_secrets(tmp_path, "TOKEN=hunter2\n")
    git_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=git_env)
    subprocess.run(["git", "-C", str(tmp_path), "add", str(path)], check=True, env=git_env)
    with pytest.raises(ConveyorError) as caught:
        load_secrets(["TOKEN"], root=tmp_path, environ={})
    assert "tracked by git" in caught.value.message
    assert "git rm --cached .conveyor/secrets.env" in (caught.value.hint or "")
    assert "hunter2" not in caught.value.message


def test_untracked_secrets_file_in_a_git_repository_is_used(tmp_path: Path) -> None:
    write_secrets(tmp_path, "TOKEN=ok\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert load_secrets(["TOKEN"], root=tmp_path, environ={}) == {"TOKEN": "ok"}


# --- environment-scoped secrets --------------------------------------------------------


def write_scoped(root: Path, environment: str, text: str, mode: int = 0o600) -> Path:
    path = root / environment_secrets_file(environment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_each_environment_gets_its_own_value_of_the_same_name(tmp_path: Path) -> None:
    write_scoped(tmp_path, "staging", "DB_URL=staging-db\n")
    environ = {"CONVEYOR_SECRET_PRODUCTION_DB_URL": "production-db", "DB_URL": "shared-db"}

    staging = load_secrets(["DB_URL"], root=tmp_path, environ=environ, environment="staging")
    production = load_secrets(["DB_URL"], root=tmp_path, environ=environ, environment="production")

    assert staging == {"DB_URL": "staging-db"}
    assert production == {"DB_URL": "production-db"}


def test_scoped_sources_come_first_in_order_then_the_shared_ones(tmp_path: Path) -> None:
    write_scoped(tmp_path, "prod-eu", "A=scoped-file\nB=scoped-file\n")
    write_secrets(tmp_path, "A=file\nB=file\nC=file\nD=file\n")
    environ = {"CONVEYOR_SECRET_PROD_EU_A": "scoped-env", "C": "env"}

    found = load_secrets(
        ["A", "B", "C", "D"], root=tmp_path, environ=environ, environment="prod-eu"
    )

    assert found == {"A": "scoped-env", "B": "scoped-file", "C": "env", "D": "file"}


def test_a_job_never_reads_an_environments_scoped_value(tmp_path: Path) -> None:
    write_scoped(tmp_path, "staging", "TOKEN=staging\n")
    environ = {"CONVEYOR_SECRET_STAGING_TOKEN": "staging"}
    with pytest.raises(ConveyorError, match="'TOKEN' needed by job 'ship' is not set"):
        load_secrets(["TOKEN"], root=tmp_path, environ=environ, job="ship")


def test_a_missing_environment_secret_names_the_environment_and_every_place(
    tmp_path: Path,
) -> None:
    write_secrets(tmp_path, "OTHER=hunter2\n")
    with pytest.raises(ConveyorError) as caught:
        load_secrets(["DB_URL"], root=tmp_path, environ={"X": "pa55word"}, environment="production")

    message = caught.value.message
    assert message.startswith("secret 'DB_URL' for environment 'production' is not set")
    scoped_file = tmp_path / ".conveyor/secrets/production.env"
    places = [
        "environment variable CONVEYOR_SECRET_PRODUCTION_DB_URL",
        f"DB_URL= in {scoped_file} (the file does not exist)",
        "environment variable DB_URL,",
        f"DB_URL= in {tmp_path / SECRETS_FILE}",
    ]
    positions = [message.index(place) for place in places]
    assert positions == sorted(positions)  # in the order they are tried
    hint = caught.value.hint or ""
    assert "CONVEYOR_SECRET_PRODUCTION_DB_URL" in hint and str(scoped_file) in hint
    for value in ("hunter2", "pa55word"):
        assert value not in message and value not in hint


def test_a_scoped_secrets_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = write_scoped(tmp_path, "staging", "TOKEN=x\n", mode=0o644)
    with pytest.raises(ConveyorError) as caught:
        load_secrets(["TOKEN"], root=tmp_path, environ={}, environment="staging")
    assert caught.value.message == f"{path} is readable by other users"


def test_a_tracked_scoped_secrets_file_is_refused(tmp_path: Path) -> None:
    path = write_scoped(tmp_path, "staging", "TOKEN=hunter2\n")
    git_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=git_env)
    subprocess.run(["git", "-C", str(tmp_path), "add", "-f", str(path)], check=True, env=git_env)
    with pytest.raises(ConveyorError) as caught:
        load_secrets(["TOKEN"], root=tmp_path, environ={}, environment="staging")
    assert "tracked by git" in caught.value.message
    assert "git rm --cached .conveyor/secrets/staging.env" in (caught.value.hint or "")


def test_jobs_inherit_no_scoped_secret_and_no_declared_one() -> None:
    environ = {
        "PATH": "/bin",
        "CONVEYOR_SECRET_PRODUCTION_DB_URL": "x",
        "DB_URL": "y",
        "CONVEYOR_RUN_ID": "3",
    }
    assert without_secrets(environ, ["DB_URL"]) == {"PATH": "/bin", "CONVEYOR_RUN_ID": "3"}


def test_scoped_variable_names() -> None:
    assert scoped_secret_variable("production", "DB_URL") == "CONVEYOR_SECRET_PRODUCTION_DB_URL"
    assert scoped_secret_variable("eu-west", "token") == "CONVEYOR_SECRET_EU_WEST_token"
