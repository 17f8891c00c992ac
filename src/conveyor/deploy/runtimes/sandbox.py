"""How a command runs inside an unpacked image's root file system: `launch_command`.

One function makes the argv, cwd and environment of everything the `process` runtime
runs from an image, a replica or a one-off command (a release hook), so they all see the
same file system and the same variables. The command runs under bubblewrap (`bwrap`):

- `/` is the image's rootfs, bound read-only: the program and its interpreter are the
  image's own (`python` is looked up on the image's PATH inside the rootfs; an image
  without it is refused, never run with the host's interpreter);
- `/proc` (of a new pid namespace), a minimal `/dev`, and an empty tmpfs at `/tmp`;
- the environment's data folder, when there is one, bound writable at `/data`;
- the host's network (replicas listen on 127.0.0.1 ports the router reaches);
- new pid, IPC and UTS namespaces, all capabilities dropped (bwrap does so for root
  unless told otherwise), and the sandbox dies with its parent;
- an environment made only of the image's Env, the release's env and PORT, HOST,
  DATA_DIR (and CONVEYOR_DATA_DIR, its older name): none of the host's variables, so
  no host PATH and no host site-packages.

What it does not do: limit CPU, memory or the network, or hide the host's network
services; the process keeps the uid that started it (root stays uid 0, without
capabilities). See docs/security.md.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.deploy.runtimes.expand import expand_references
from conveyor.errors import ConveyorError

HOST = "127.0.0.1"
DATA_MOUNT = "/data"
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MOUNT_POINTS = ("proc", "dev", "tmp", DATA_MOUNT.lstrip("/"))
BWRAP = "bwrap"
_NAMESPACES = ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try")


@dataclass(frozen=True)
class Launch:
    """What to hand to `subprocess.Popen`: argv (bwrap's), cwd and the whole env."""

    argv: list[str]
    cwd: str
    env: dict[str, str]


def launch_command(
    image: Mapping[str, Any],
    rootfs: Path,
    env: Mapping[str, str],
    *,
    command: Sequence[str] | None = None,
    data_dir: Path | None = None,
    port: int | None = None,
) -> Launch:
    """`command` (default: the image's Entrypoint + Cmd) inside the image at `rootfs`.

    `image` is the unpacked image's settings (Entrypoint, Cmd, Env, WorkingDir); `env`
    the release's variables (secrets may be added by the caller to the returned env)."""
    argv = list(command) if command is not None else _image_argv(image)
    if not argv:
        raise ConveyorError(f"image {image.get('digest')} has neither Entrypoint nor Cmd")
    image_env = dict(str(pair).partition("=")[::2] for pair in image.get("Env") or [])
    environment = {"PATH": IMAGE_PATH, **image_env, **env, "HOST": HOST}
    if port is not None:
        environment["PORT"] = str(port)
    if data_dir is not None:
        environment |= {"DATA_DIR": DATA_MOUNT, "CONVEYOR_DATA_DIR": DATA_MOUNT}
    argv = expand_references(argv, environment)  # `$(PORT)`, as Kubernetes does
    program = program_in_image(argv[0], rootfs, environment["PATH"], image)
    workdir = str(image.get("WorkingDir") or "/")
    sandbox = [bubblewrap(), "--ro-bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"]
    sandbox += ["--tmpfs", "/tmp"]  # noqa: S108 (the sandbox's own, empty /tmp)
    if data_dir is not None:
        sandbox += ["--bind", str(data_dir), DATA_MOUNT]
    sandbox += [*_NAMESPACES, "--die-with-parent", "--chdir", workdir, "--", program]
    return Launch([*sandbox, *argv[1:]], str(rootfs), environment)


def program_in_image(program: str, rootfs: Path, path: str, image: Mapping[str, Any]) -> str:
    """The program's absolute path inside the image: as given when absolute, else the
    first match on the image's PATH. Refused when the image does not hold it."""
    if program.startswith("/"):
        candidates = [program]
    elif "/" in program:
        candidates = [posixpath.join(str(image.get("WorkingDir") or "/"), program)]
    else:
        directories = [d for d in path.split(":") if d.startswith("/")]
        candidates = [posixpath.join(d, program) for d in directories]
    for candidate in candidates:
        if _executable_inside(rootfs, candidate):
            return candidate
    hint = "build it on Conveyor's Python base (build-image with no `base:`)"
    if program not in ("python", "python3"):
        hint = "name a program the image holds in its Entrypoint or Cmd"
    raise ConveyorError(
        f"image {image.get('repository')}@{image.get('digest')} holds no {program!r} "
        f"(looked in {', '.join(candidates) or 'nothing'}): the process runtime runs the "
        "image's own programs, never the host's",
        hint=hint,
    )


def _executable_inside(rootfs: Path, path: str) -> bool:
    """Whether `path`, resolved inside the rootfs (symlinks too), is an executable file."""
    current = rootfs
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    for _hop in range(40):  # symlink loops end here
        for index, part in enumerate(parts):
            candidate = current / part
            if candidate.is_symlink():
                target = os.readlink(candidate)
                base = [] if target.startswith("/") else _relative(current, rootfs)
                parts = [*base, *target.split("/"), *parts[index + 1 :]]
                parts = [p for p in posixpath.normpath("/" + "/".join(parts)).split("/") if p]
                current = rootfs
                break
            current = candidate
        else:
            return current.is_file() and os.access(current, os.X_OK)
    return False


def _relative(directory: Path, rootfs: Path) -> list[str]:
    return list(directory.relative_to(rootfs).parts)


def _image_argv(image: Mapping[str, Any]) -> list[str]:
    return [str(a) for a in [*(image.get("Entrypoint") or []), *(image.get("Cmd") or [])]]


def bubblewrap() -> str:
    found = shutil.which(BWRAP)
    if found is None:
        raise ConveyorError(
            "the process runtime runs replicas under bubblewrap (bwrap), which is not installed",
            hint="apt-get install bubblewrap (or use the podman runtime)",
        )
    return found
