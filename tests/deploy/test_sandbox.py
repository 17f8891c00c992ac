"""`launch_command`: the one place that makes what a replica or a one-off command of an
image runs (bubblewrap's argv, the cwd, the whole environment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.deploy.runtimes.sandbox import launch_command, program_in_image
from conveyor.errors import ConveyorError

IMAGE = {
    "repository": "shop",
    "digest": "sha256:" + "ab" * 32,
    "Entrypoint": ["python", "-m", "app"],
    "Cmd": ["--verbose"],
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONPATH=/app/deps", "HOST=0.0.0.0"],
    "WorkingDir": "/app",
}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A rootfs whose /usr/bin/python is a link to python3.11, as in the Python base."""
    root = tmp_path / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    interpreter = root / "usr" / "bin" / "python3.11"
    interpreter.write_text("")
    interpreter.chmod(0o755)
    (root / "usr" / "bin" / "python").symlink_to("python3.11")
    (root / "bin").symlink_to("usr/bin")
    return root


def test_a_replica_runs_the_image_entrypoint_in_a_read_only_root(
    rootfs: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    launch = launch_command(IMAGE, rootfs, {"GREETING": "hi"}, data_dir=data, port=8123)

    argv = launch.argv
    assert argv[argv.index("--ro-bind") + 1 : argv.index("--ro-bind") + 3] == [str(rootfs), "/"]
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == [str(data), "/data"]
    assert argv[argv.index("--chdir") + 1] == "/app"
    assert argv[argv.index("--") + 1 :] == ["/usr/bin/python", "-m", "app", "--verbose"]
    assert "--die-with-parent" in argv and "--unshare-pid" in argv


def test_the_environment_is_the_image_s_and_the_release_s_never_the_host_s(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIRTUAL_ENV", "/host/venv")
    env = {"GREETING": "hi", "PYTHONPATH": "/app/deps:/app/lib"}
    launch = launch_command(IMAGE, rootfs, env, data_dir=tmp_path, port=8123)

    assert launch.env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": "/app/deps:/app/lib",  # the release's value wins over the image's
        "GREETING": "hi",
        "HOST": "127.0.0.1",  # the router reaches replicas there, whatever the image says
        "PORT": "8123",
        "DATA_DIR": "/data",
        "CONVEYOR_DATA_DIR": "/data",
    }


def test_a_one_off_command_gets_the_same_sandbox_without_a_port(rootfs: Path) -> None:
    launch = launch_command(IMAGE, rootfs, {}, command=["python", "-m", "flask", "init-db"])

    assert launch.argv[launch.argv.index("--") + 1 :] == [
        "/usr/bin/python",
        "-m",
        "flask",
        "init-db",
    ]
    assert "PORT" not in launch.env and "DATA_DIR" not in launch.env
    assert "--bind" not in launch.argv  # no data folder given: none mounted


def test_a_program_is_found_through_the_image_s_own_links(rootfs: Path) -> None:
    assert program_in_image("python", rootfs, "/bin", IMAGE) == "/bin/python"
    assert program_in_image("/usr/bin/python3.11", rootfs, "", IMAGE) == "/usr/bin/python3.11"


def test_an_image_without_the_program_is_refused_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConveyorError, match=r"holds no 'python' \(looked in /usr/local/bin/python"):
        launch_command(IMAGE, empty, {})


def test_a_link_out_of_the_image_does_not_find_the_host_s_program(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python").symlink_to("/../../../../usr/bin/env")  # stays inside
    with pytest.raises(ConveyorError, match="holds no 'python'"):
        program_in_image("python", root, "/usr/bin", IMAGE)
