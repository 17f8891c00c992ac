"""Which Python an image's parts were made for, as image labels, and the check that
they agree.

A dependency layer holds wheels built for the interpreter pip ran with (compiled
extensions are tied to its minor version: `cp311`); the base holds the interpreter that
will import them. The builder records both in the image config's labels; a deploy refuses
an image where they differ, before anything is started, naming both versions.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.supply.oci.store import ImageStore, image_config

# The interpreter the image carries (set by the base), and the one its dependency layer
# was installed for (set by build-image).
LABEL_PYTHON = "org.conveyor.python.version"
LABEL_DEPS_PYTHON = "org.conveyor.deps.python.version"
_VERSION = re.compile(r"^\d+\.\d+$")
_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def python_version_of(python: str) -> str:
    """`3.11`: the minor version of the interpreter at `python`."""
    try:
        done = subprocess.run(
            [python, "-c", _PROBE], capture_output=True, text=True, check=False, timeout=60
        )
    except OSError as error:
        raise ConveyorError(f"cannot run {python}: {error.strerror or error}") from None
    version = done.stdout.strip()
    if done.returncode != 0 or not _VERSION.match(version):
        raise ConveyorError(f"cannot tell which Python {python} is: {done.stderr.strip()[-200:]}")
    return version


def check_interpreter(labels: Mapping[str, str], image: str) -> None:
    """Refuse an image whose dependencies were built for another Python than the one it
    carries. An image that names only one of the two (or neither) is not checked."""
    runs, built_for = labels.get(LABEL_PYTHON), labels.get(LABEL_DEPS_PYTHON)
    if runs is None or built_for is None or runs == built_for:
        return
    raise ConveyorError(
        f"image {image} cannot run: its dependencies were installed for Python {built_for} "
        f"({LABEL_DEPS_PYTHON}) but its interpreter is Python {runs} ({LABEL_PYTHON})",
        hint=f"build the image again with a Python {runs} installing the dependencies "
        "(the build-image job's `python`), or on a base carrying Python " + built_for,
    )


def image_labels(store: ImageStore, repository: str, digest: str) -> dict[str, str]:
    """The labels of the image config of `repository@digest`."""
    return labels_of(image_config(store, repository, digest))


def labels_of(config: dict[str, Any]) -> dict[str, str]:
    """The labels of an image config document."""
    labels = (config.get("config") or {}).get("Labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}
