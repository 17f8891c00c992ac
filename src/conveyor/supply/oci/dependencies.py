"""The dependency layer's inputs and outputs: what pip is asked, what it installed.

pip always resolves the full closure (never `--no-deps`): a file that pins only the
packages the project imports still gets their dependencies. A hashed lock is installed
as is with `--require-hashes`, under which pip refuses any package the lock does not name;
`missing_from_lock` reads pip's log to name them. What pip installed (every
`*.dist-info` in the target folder) is the closure: it is written into the layer
(`CLOSURE_FILE`) and kept in the cache entry, so the SBOM, the scan and the build log all
see every package.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from conveyor.errors import ConveyorError
from conveyor.supply.oci import model
from conveyor.supply.oci.layers import LayerBlob
from conveyor.supply.oci.model import Descriptor, canonical_json, digest_of
from conveyor.supply.oci.requirements import LOCK_HINT, Pinning, exact_pins

DEPS_DIR = "/app/deps"
CLOSURE_FILE = "conveyor-dependencies.txt"  # in DEPS_DIR: name==version of every package
KEY_VERSION = "2"  # bump when the same inputs should give a different layer
# The job's pip settings that decide what an unlocked file resolves to.
INDEX_SETTINGS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")
_UNHASHED_HEADER = "all requirements must have their versions pinned with ==. These do not:"
_PARENT = re.compile(r"\(from ([^\s>(]+)->")
_LOG_PREFIX = re.compile(r"^\S+ ")  # pip's log file starts each line with a timestamp


@dataclass(frozen=True)
class Dependencies:
    """A requirements file to install at DEPS_DIR. `origin` names it in messages (the
    file's name, or `pyproject.toml` when the builder's caller derived it from there);
    `index` holds the job's pip index settings, part of an unlocked file's cache key."""

    requirements: Path
    python: str = sys.executable  # the interpreter whose pip installs (and whose wheels fit)
    cache: DependencyCache | None = None
    origin: str = ""
    index: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.origin or self.requirements.name


@dataclass(frozen=True)
class Installed:
    """The dependency layer, as built or found in the cache, and what it holds."""

    digest: str
    size: int
    diff_id: str
    closure: tuple[str, ...]  # canonical `name==version`, sorted

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(model.LAYER_TAR_GZIP, self.digest, self.size)

    @classmethod
    def of(cls, blob: LayerBlob, closure: tuple[str, ...]) -> Installed:
        return cls(blob.digest, blob.size, blob.diff_id, closure)


@dataclass(frozen=True)
class DependencyReport:
    """What the build log and the image record say of the dependencies."""

    origin: str
    pinning: Pinning
    closure: tuple[str, ...]
    unpinned: tuple[str, ...]  # installed, but not pinned `==` by the origin

    def warning(self) -> str | None:
        if self.pinning is Pinning.HASHED:
            return None
        hashes = "" if self.unpinned else " but not every file's hash"
        unpinned = (
            f"does not pin {', '.join(self.unpinned)} (pip resolved "
            f"{'them' if len(self.unpinned) > 1 else 'it'}: another day's build may "
            "install other versions)"
            if self.unpinned
            else f"pins every version{hashes}: the index could serve other bytes"
        )
        return f"warning: {self.origin} {unpinned}; {LOCK_HINT}"


class DependencyCache:
    """Built dependency layers by key, so a warm build neither runs pip nor re-packs.

    `<root>/<key>.json` records the layer's digest, size, diff_id and closure; the blob
    itself is the image store's (an entry whose blob the store lost is a miss).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: str) -> Installed | None:
        try:
            entry = json.loads((self.root / f"{key}.json").read_bytes())
            closure = tuple(str(item) for item in entry["closure"])
            return Installed(str(entry["digest"]), int(entry["size"]), entry["diff_id"], closure)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # absent, unreadable or from an older Conveyor: rebuild

    def put(self, key: str, installed: Installed) -> None:
        entry = {
            "digest": installed.digest,
            "size": installed.size,
            "diff_id": installed.diff_id,
            "closure": list(installed.closure),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.root, prefix=f".{key}.")
        with os.fdopen(handle, "wb") as out:
            out.write(canonical_json(entry))
        os.replace(temporary, self.root / f"{key}.json")


def dependency_key(requirements: bytes, deps: Dependencies, pinning: Pinning) -> str:
    """What decides the dependency layer: the requirements, the interpreter, the platform,
    the builder and, unless the file is a lock (which names every file), the index."""
    parts = {
        "builder": KEY_VERSION,
        "requirements": digest_of(requirements),
        "python": os.path.realpath(deps.python),
        "machine": platform.machine(),
        "target": DEPS_DIR,
        "lock": pinning is Pinning.HASHED,
        "index": {} if pinning is Pinning.HASHED else dict(sorted(deps.index.items())),
    }
    return digest_of(canonical_json(parts)).removeprefix("sha256:")


def pip_install_argv(
    python: str, requirements: Path, target: Path, pinning: Pinning, log: Path
) -> list[str]:
    """pip for the dependency layer: the whole closure, resolved; a lock's files only."""
    argv = [python, "-m", "pip", "install", "--no-compile", "--no-input"]
    argv += ["--disable-pip-version-check", "--progress-bar", "off", "--log", str(log)]
    argv += ["--target", str(target), "-r", str(requirements)]
    return [*argv, "--require-hashes"] if pinning is Pinning.HASHED else argv


def installed_closure(target: Path) -> tuple[str, ...]:
    """`name==version` of every distribution pip put in `target`, sorted."""
    found = set()
    for metadata in target.glob("*.dist-info/METADATA"):
        headers = HeaderParser().parsestr(metadata.read_text(errors="replace"))
        name, version = headers.get("Name"), headers.get("Version")
        if name and version:
            found.add(f"{canonicalize_name(name)}=={version.strip()}")
    return tuple(sorted(found))


def write_closure(target: Path, closure: Iterable[str], origin: str) -> None:
    lines = [f"# every package installed from {origin}, as pip resolved it", *closure]
    (target / CLOSURE_FILE).write_text("\n".join(lines) + "\n")


def unpinned_in(closure: Iterable[str], requirements_text: str) -> tuple[str, ...]:
    """The closure's packages the requirements do not pin with `==`."""
    pinned = exact_pins(requirements_text)
    names = (item.partition("==")[0] for item in closure)
    return tuple(name for name in names if name not in pinned)


def missing_from_lock(pip_log: Path, origin: str) -> ConveyorError | None:
    """The one clear error for a hashed lock that misses part of its closure (pip, under
    `--require-hashes`, lists the unpinned dependencies it met); None for other failures."""
    try:
        lines = [_LOG_PREFIX.sub("", line) for line in pip_log.read_text().splitlines()]
    except OSError:
        return None
    start = next((i for i, line in enumerate(lines) if _UNHASHED_HEADER in line), None)
    if start is None:
        return None
    missing, parents = [], []
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        requirement = _requirement(line.strip().split(" from ")[0])
        if requirement is not None:
            missing.append(canonicalize_name(requirement.name))
            parents += _PARENT.findall(line)
    if not missing:
        return None
    needed_by = f" (needed by {', '.join(dict.fromkeys(parents))})" if parents else ""
    return ConveyorError(
        f"{origin} is a hashed lock but does not name {', '.join(dict.fromkeys(missing))}"
        f"{needed_by}: with hashes pip installs only what the lock names",
        hint=f"lock the whole closure again; {LOCK_HINT}",
    )


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None
