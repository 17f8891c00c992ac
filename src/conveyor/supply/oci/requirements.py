"""How firmly a requirements file pins what the image builder installs.

A lock (`uv pip compile --generate-hashes`, `pip-compile --generate-hashes`) names every
package with `==` and the sha256 of each file it may install: pip then installs exactly
those bytes (`--require-hashes`), today or next month, or stops. A file that only pins
versions trusts the index not to swap a file; a file with ranges trusts it to resolve the
same way twice. The builder installs all three (pip resolving the whole closure), and
warns about the last two, naming the packages no line pins.
"""

from __future__ import annotations

from enum import StrEnum

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

_NESTED_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint", "-e", "--editable"})
LOCK_HINT = (
    "compile a lock with `uv pip compile --generate-hashes requirements.in "
    "-o requirements.txt` (the shop's `make lock` does; or `pip-compile "
    "--generate-hashes`); see docs/images.md"
)


class Pinning(StrEnum):
    HASHED = "hashed"  # every requirement `name==version` with its files' hashes: a lock
    PINNED = "pinned"  # every requirement `name==version`, not every one hashed
    UNPINNED = "unpinned"  # a range, a bare name, a URL or a nested file


def pinning_of(text: str) -> Pinning:
    """How the requirements file `text` pins its packages (an empty file pins nothing)."""
    requirements = 0
    hashed = 0
    for line in _logical_lines(text):
        if line.startswith("-"):
            if line.split()[0].split("=")[0] in _NESTED_OPTIONS:
                return Pinning.UNPINNED
            continue  # --index-url, --find-links ...: they do not loosen a pin
        requirement, *options = line.split(" --")
        if not _is_exact(requirement.strip()):
            return Pinning.UNPINNED
        requirements += 1
        hashed += any(option.startswith("hash") for option in options)
    if requirements == 0:
        return Pinning.UNPINNED
    return Pinning.HASHED if hashed == requirements else Pinning.PINNED


def exact_pins(text: str) -> frozenset[str]:
    """The canonical names the requirements file `text` pins with `==`."""
    pinned = set()
    for line in _logical_lines(text):
        requirement = line.split(" --")[0].strip()
        if not line.startswith("-") and _is_exact(requirement):
            pinned.add(canonicalize_name(Requirement(requirement).name))
    return frozenset(pinned)


def _is_exact(text: str) -> bool:
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return False
    specifiers = list(requirement.specifier)
    exact = len(specifiers) == 1 and specifiers[0].operator in ("==", "===")
    return bool(exact and not requirement.url and not specifiers[0].version.endswith(".*"))


def _logical_lines(text: str) -> list[str]:
    joined = text.replace("\\\n", " ")
    lines = (line.split(" #")[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]
