"""One image digest, run by the process runtime (bubblewrap over the unpacked rootfs) and
by podman (a container), with the image's own interpreter in both: what a replica can
import, where it can write, and real apps (the shop, a Flask app) answering HTTP.

podman, runc and bubblewrap are declared dependencies of the real tests: a machine
without them fails here, it does not skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.deploy.model import HealthCheck, ReleaseSpec
from conveyor.deploy.runtimes.base import Runtime
from conveyor.deploy.runtimes.podman import PodmanRuntime
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.supply.oci.build import AppFiles, Dependencies, ImageSpec, build_image
from conveyor.supply.oci.layout import LayoutStore
from deploy.test_podman_runtime import free_port, podman_in
from python_base import python_base, wheelhouse_pip

pytestmark = [pytest.mark.real, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
WAIT = 120.0  # pip-built images on a loaded machine; only keeps a broken test from hanging
# Imported by the probe: installed in Conveyor's own virtualenv, never in the image.
HOST_ONLY_MODULE = "psutil"
PROBE = f"""\
import http.server, json, os, sys

def attempt(action):
    try:
        action()
        return "ok"
    except Exception as error:
        return type(error).__name__

def write(path):
    with open(path, "w") as handle:
        handle.write("written by " + os.environ["PORT"])

RESULT = json.dumps({{
    "import": attempt(lambda: __import__({HOST_ONLY_MODULE!r})),
    "write_app": attempt(lambda: write("/app/written")),
    "write_usr": attempt(lambda: write("/usr/written")),
    "write_data": attempt(lambda: write("/data/probe-" + os.environ["PORT"])),
    "write_tmp": attempt(lambda: write("/tmp/probe")),
    "environ": dict(os.environ),
    "executable": os.path.realpath(sys.executable),
    "path": sys.path,
}}).encode()

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(RESULT)))
        self.end_headers()
        self.wfile.write(RESULT)

    def log_message(self, *args):
        pass

http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[PodmanRuntime]:
    with podman_in(tmp_path) as runtime:
        yield runtime


@pytest.fixture
def process(podman: PodmanRuntime, tmp_path: Path) -> Iterator[ProcessRuntime]:
    """The process runtime over the same image store as `podman`."""
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: apt-get install -y bubblewrap")
    runtime = ProcessRuntime(tmp_path / "process", podman.store)
    yield runtime
    for release_id in runtime.releases():
        runtime.stop(release_id)


def serve(runtime: Runtime, release: ReleaseSpec, path: str = "/") -> bytes:
    """Start the release, wait for it, GET `path` from its replica; then stop it."""
    runtime.start(release)
    try:
        [replica] = runtime.wait_ready(release.release_id, WAIT)
        with urllib.request.urlopen(f"http://{replica.address}{path}", timeout=10) as answer:
            return bytes(answer.read())
    finally:
        runtime.stop(release.release_id)


def one_replica(name: str, repository: str, digest: str, data: Path, path: str) -> ReleaseSpec:
    return ReleaseSpec(
        name,
        repository,
        digest,
        (free_port(),),
        env={"GREETING": "hi"},
        readiness=HealthCheck(path=path, interval=0.2),
        data_dir=str(data),
    )


def test_a_replica_sees_only_its_image_and_writes_only_its_data_folder(
    podman: PodmanRuntime, process: ProcessRuntime, tmp_path: Path
) -> None:
    __import__(HOST_ONLY_MODULE)  # the probe's module is importable here, on the host
    source = tmp_path / "probe"
    (source / "probe").mkdir(parents=True)
    (source / "probe" / "__main__.py").write_text(PROBE)
    spec = ImageSpec(
        AppFiles(source), base=python_base(podman.store), entrypoint=("python", "-m", "probe")
    )
    digest = build_image(spec, podman.store, "probe", ("1",)).manifest_digest
    data = tmp_path / "data"
    data.mkdir()

    for runtime in (process, podman):
        release = one_replica(f"probe-{runtime.name}", "probe", digest, data, "/")
        seen = json.loads(serve(runtime, release))
        port = release.ports[0]

        assert seen["import"] == "ModuleNotFoundError", runtime.name
        assert seen["write_app"] == seen["write_usr"] == "OSError", runtime.name  # EROFS
        assert seen["write_data"] == seen["write_tmp"] == "ok", runtime.name
        assert (data / f"probe-{port}").read_text() == f"written by {port}"
        assert seen["executable"] == "/usr/bin/python3.11", runtime.name
        assert not any(sys.prefix in entry for entry in seen["path"]), runtime.name
        environ = seen["environ"]
        assert environ["DATA_DIR"] == "/data" and environ["GREETING"] == "hi"
        assert environ["PATH"] == "/usr/local/bin:/usr/bin:/bin", runtime.name
        assert "VIRTUAL_ENV" not in environ and "PYTHONPATH" not in environ, runtime.name
    assert not (podman.store.root / "probe").exists()  # nothing written next to the store


def test_the_process_runtime_refuses_an_image_without_its_program(
    process: ProcessRuntime, tmp_path: Path
) -> None:
    source = tmp_path / "bare"
    (source / "app").mkdir(parents=True)
    (source / "app" / "__main__.py").write_text("print('never')\n")
    spec = ImageSpec(AppFiles(source), entrypoint=("python", "-m", "app"))  # no base
    digest = build_image(spec, process.store, "bare", ("1",)).manifest_digest

    with pytest.raises(Exception, match=r"holds no 'python'.*never the host's") as raised:
        process.start(one_replica("bare-1", "bare", digest, tmp_path, "/"))
    assert "Conveyor's Python base" in str(getattr(raised.value, "hint", ""))
    assert process.releases() == []


def shop_image(store: LayoutStore, tmp_path: Path) -> str:
    source = tmp_path / "shop"
    shutil.copytree(
        REPO / "examples/shop/app", source / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    spec = ImageSpec(
        AppFiles(source, include=("app/**/*.py",)),
        base=python_base(store),
        dependencies=Dependencies(REPO / "examples/shop/requirements.txt", sys.executable),
        entrypoint=("python", "-m", "app"),
        env={"PYTHONPATH": "/app/deps"},
    )
    return build_image(spec, store, "shop", ("1",), run=wheelhouse_pip).manifest_digest


FLASK_SERVE = (
    "python",
    "-c",
    "import os; from notes import create_app; "
    "create_app().run(host=os.environ['HOST'], port=int(os.environ['PORT']))",
)


def flask_image(store: LayoutStore, tmp_path: Path) -> str:
    source = tmp_path / "flask-notes"
    shutil.copytree(REPO / "tests/data/apps/flask-notes", source)
    (tmp_path / "requirements.txt").write_text("flask>=3.0\n")
    spec = ImageSpec(
        AppFiles(source, include=("notes/**",)),
        base=python_base(store),
        dependencies=Dependencies(tmp_path / "requirements.txt", sys.executable),
        entrypoint=FLASK_SERVE,
        env={"PYTHONPATH": "/app/deps", "FLASK_DATABASE": "/data/notes.sqlite"},
    )
    return build_image(spec, store, "notes", ("1",)).manifest_digest


def init_db(process: ProcessRuntime, digest: str, data: Path) -> None:
    """`flask --app notes init-db` once, inside the image, as a release hook would."""
    release = ReleaseSpec("notes-init", "notes", digest, (), data_dir=str(data))
    launch = process.one_off(release, ["python", "-m", "flask", "--app", "notes", "init-db"])
    done = subprocess.run(
        launch.argv,
        cwd=launch.cwd,
        env=launch.env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (data / "notes.sqlite").is_file()


def test_the_shop_and_a_flask_app_run_from_one_digest_under_both_runtimes(
    podman: PodmanRuntime, process: ProcessRuntime, tmp_path: Path
) -> None:
    shop, notes = shop_image(podman.store, tmp_path), flask_image(podman.store, tmp_path)
    shop_data, notes_data = tmp_path / "shop-data", tmp_path / "notes-data"
    shop_data.mkdir()
    notes_data.mkdir()
    init_db(process, notes, notes_data)

    for runtime in (process, podman):
        health = serve(
            runtime,
            one_replica(f"shop-{runtime.name}", "shop", shop, shop_data, "/healthz"),
            "/healthz",
        )
        assert b'"ok"' in health, runtime.name
        page = serve(runtime, one_replica(f"notes-{runtime.name}", "notes", notes, notes_data, "/"))
        assert b"<" in page and b"Traceback" not in page, runtime.name
    assert (shop_data / "shop.db").is_file()  # the shop kept its database in /data
