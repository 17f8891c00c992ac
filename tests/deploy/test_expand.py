"""`$(NAME)` in an image's command: Kubernetes' expansion rule, in both runtimes."""

from __future__ import annotations

import json

from conveyor.deploy.model import ReleaseSpec
from conveyor.deploy.runtimes.expand import expand_references, has_references
from conveyor.deploy.runtimes.podman import ImageCommand, replica_arguments, task_arguments

ENV = {"HOST": "127.0.0.1", "PORT": "41234"}


def test_references_are_replaced_by_the_variables_values() -> None:
    argv = ["gunicorn", "-b", "$(HOST):$(PORT)", "--port=$(PORT)"]
    assert expand_references(argv, ENV) == ["gunicorn", "-b", "127.0.0.1:41234", "--port=41234"]


def test_unknown_references_escapes_and_shell_syntax_stay_as_written() -> None:
    argv = ["$(NOPE)", "$$(PORT)", "$PORT", "${PORT}", "$(", "a$$b"]
    assert expand_references(argv, ENV) == ["$(NOPE)", "$(PORT)", "$PORT", "${PORT}", "$(", "a$b"]


def test_values_are_not_expanded_again() -> None:
    assert expand_references(["$(A)"], {"A": "$(B)", "B": "x"}) == ["$(B)"]


def test_podman_is_given_the_expanded_command_only_when_it_has_references() -> None:
    release = ReleaseSpec(
        release_id="staging-app-0123456789ab",
        repository="app",
        digest="sha256:" + "0" * 64,
        ports=(41234,),
    )
    serve = ImageCommand(["python", "-m", "uvicorn"], ["app:app", "--port", "$(PORT)"], {})
    argv = replica_arguments(release, 0, "IMAGE", serve)
    at = argv.index("IMAGE")
    assert argv[at - 2 : at] == ["--entrypoint", json.dumps(["python", "-m", "uvicorn"])]
    assert argv[at + 1 :] == ["app:app", "--port", "41234"]
    plain = ImageCommand(["python", "-m", "app"], [], {})
    assert replica_arguments(release, 0, "IMAGE", plain)[-1] == "IMAGE"
    assert not has_references(plain.entrypoint)


def test_a_podman_one_off_command_is_expanded_from_the_replicas_environment() -> None:
    release = ReleaseSpec(
        release_id="staging-app-0123456789ab",
        repository="app",
        digest="sha256:" + "0" * 64,
        ports=(41234,),
        env={"SHOP_DB": "/data/shop.db"},
        data_dir="/srv/data",
    )
    argv = task_arguments(release, "IMAGE", "t", ["migrate", "--db", "$(SHOP_DB)", "$(NOPE)"])
    at = argv.index("IMAGE")
    assert argv[at + 1 :] == ["--db", "/data/shop.db", "$(NOPE)"]
    assert argv[argv.index("--entrypoint") + 1] == json.dumps(["migrate"])
    assert "-d" not in argv and not any(a.startswith("--label=") for a in argv)
