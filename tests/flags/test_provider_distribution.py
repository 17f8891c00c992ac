"""The provider as a service installs it: its own wheel, in a fresh virtualenv without
Conveyor, reading a flag from a running Conveyor flag server; and its code passes
Conveyor's own `sast` step, so a service that ships it passes that gate too."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openfeature import api

from conftest import wait_until
from conveyor.flags.model import Flag
from conveyor.flags.server import create_app
from conveyor.flags.store import FlagLedger
from conveyor.steps.sast import SastStep
from conveyor.store.store import Store
from flags.serving import serving
from steps.conftest import run_step

PACKAGE = Path(__file__).resolve().parents[2] / "packages" / "conveyor-openfeature"
NEW_CHECKOUT = {
    "name": "new-checkout",
    "enabled": True,
    "strategies": [{"type": "users", "users": ["ada"]}],
}
# What a service writes: no Conveyor import, no HTTP call of its own.
SERVICE = """\
import json, sys
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from conveyor_openfeature import ConveyorProvider

api.set_provider_and_wait(ConveyorProvider(sys.argv[1], "production", refresh_interval=0))
flags = api.get_client()
print(json.dumps({
    user: flags.get_boolean_value("new-checkout", False, EvaluationContext(user))
    for user in ("ada", "bob")
}))
"""


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # No PYTHONPATH: the fresh interpreter must not find this checkout's Conveyor.
    hidden = ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")
    env = {name: value for name, value in os.environ.items() if name not in hidden}
    return subprocess.run(argv, capture_output=True, text=True, check=False, env=env, timeout=600)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv holding the provider's wheel and its dependencies only."""
    root = tmp_path_factory.mktemp("provider")
    built = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(root / "wheels"),
            str(PACKAGE),
        ]
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (root / "wheels").glob("conveyor_openfeature-*.whl")
    made = run([sys.executable, "-m", "venv", str(root / "venv")])
    assert made.returncode == 0, made.stderr
    python = root / "venv" / "bin" / "python"
    installed = run([str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    assert installed.returncode == 0, installed.stderr
    return python


@pytest.mark.timeout(600)
def test_a_service_reads_a_flag_with_the_wheel_alone(fresh_venv: Path, tmp_path: Path) -> None:
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        ledger.define("production", Flag.model_validate(NEW_CHECKOUT))
        with serving(create_app(ledger)) as url:
            answered = run([str(fresh_venv), "-c", SERVICE, url])
    conveyor = run([str(fresh_venv), "-c", "import conveyor"])
    listed = run([str(fresh_venv), "-m", "pip", "list", "--format=json"])

    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout) == {"ada": True, "bob": False}
    assert "No module named 'conveyor'" in conveyor.stderr
    names = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert "conveyor" not in names and "conveyor-openfeature" in names


def test_the_provider_passes_conveyors_own_sast_step(tmp_path: Path) -> None:
    workspace = tmp_path / "service"
    shutil.copytree(PACKAGE / "src", workspace / "src")

    outcome = run_step(SastStep(), {}, workspace)

    assert outcome.ran.ok, outcome.log.text
    assert outcome.findings == []
    assert outcome.final.ok


def readme_example(heading: str) -> str:
    """The first Python block under `## heading` in the provider's README."""
    text = (PACKAGE / "README.md").read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def flag_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A flag server with `new-checkout` on for ada only, named by FLAGS_URL; the
    OpenFeature API's providers are shut down afterwards."""
    with Store(tmp_path / "state") as store:
        ledger = FlagLedger(store.engine)
        ledger.define("production", Flag.model_validate(NEW_CHECKOUT))
        with serving(create_app(ledger)) as url:
            monkeypatch.setenv("FLAGS_URL", url)
            monkeypatch.setenv("CONVEYOR_ENVIRONMENT", "production")
            try:
                yield url
            finally:
                api.shutdown()
                api.clear_providers()


def test_the_readmes_flask_example_reads_the_flag(flag_server: str) -> None:
    namespace: dict[str, Any] = {"__name__": "notes"}
    exec(compile(readme_example("In a Flask service"), "README.md", "exec"), namespace)
    client = namespace["create_app"]().test_client()

    def page(user: str) -> str:
        return str(client.get("/", headers={"X-User": user}).get_data(as_text=True))

    wait_until(lambda: page("ada") == "new checkout", "the provider's first fetch")
    assert page("bob") == "old checkout"


def test_the_readmes_fastapi_example_reads_the_flag(flag_server: str) -> None:
    namespace: dict[str, Any] = {"__name__": "todo"}
    exec(compile(readme_example("In a FastAPI service"), "README.md", "exec"), namespace)
    app = namespace["app"]

    async def pages() -> tuple[Any, Any]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),  # what uvicorn runs at start and stop
            httpx.AsyncClient(transport=transport, base_url="http://todo") as client,
        ):
            for _ in range(200):  # the provider's first fetch, in its own thread
                ada = (await client.get("/", headers={"X-User": "ada"})).json()
                if ada["new_checkout"]:
                    break
                await asyncio.sleep(0.05)
            bob = (await client.get("/", headers={"X-User": "bob"})).json()
            return ada, bob

    assert asyncio.run(pages()) == ({"new_checkout": True}, {"new_checkout": False})
