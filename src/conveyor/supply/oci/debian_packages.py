"""Debian packages for an image: resolved with apt's metadata, fetched with `apt-get
download`, checked against apt's SHA256, and read as layer entries.

Only what a package *ships* goes in the image: no maintainer script runs (there is no
shell in the image to run one), so a package's Depends needed only by its scripts
(`debconf`, `dpkg`, `perl-base`...) are left out by name (`EXCLUDED`, each with its reason).
Alternatives (`a | b`) take the first. The resolved set is the candidates of this host's
apt lists: the same lists give the same packages, versions and bytes (a Debian archive
never changes a released version's file), hence the same layer.

The data of a .deb is read with `dpkg-deb --fsys-tarfile` (which knows every compression
a .deb may use) and Python's tarfile over that stream, member by member: a member is
turned into a `LayerEntry` (file bytes, symlink, directory), never extracted to disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConveyorError
from conveyor.supply.oci.layers import LayerEntry, normalise_path
from conveyor.supply.oci.model import canonical_json, digest_of

# Depends we never install, and why. Each is needed only to *run* maintainer scripts or
# to manage packages, neither of which happens in an image built by unpacking.
EXCLUDED: dict[str, str] = {
    "debconf": "configuration prompts of maintainer scripts",
    "dpkg": "package management (no packages are installed in the image)",
    "perl-base": "maintainer scripts",
    "tar": "dpkg's own dependency",
    "install-info": "info pages, not shipped",
    "readline-common": "terminal line editing data: the interpreter runs without a tty",
    "openssl": "the command-line tool ca-certificates' script runs (the bundle is built here)",
}
_TIMEOUT = 300.0


@dataclass(frozen=True)
class DebianPackage:
    """One binary package as apt knows it (its candidate version)."""

    name: str
    version: str
    architecture: str
    sha256: str
    source: str  # the source package (for the SBOM), without its version
    stanza: str  # apt's record, as the image's dpkg status lists it

    @property
    def file_name(self) -> str:
        """apt-get download's file name: the epoch's ':' is written '%3a'."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    @property
    def pin(self) -> str:
        return f"{self.name}={self.version}"


def resolve(roots: Iterable[str]) -> list[DebianPackage]:
    """`roots` and their Depends/Pre-Depends closure (minus EXCLUDED), sorted by name."""
    found: dict[str, DebianPackage] = {}
    pending = sorted(set(roots))
    while pending:
        records = apt_show(pending)
        missing = sorted(set(pending) - set(records))
        if missing:
            raise ConveyorError(
                f"apt knows no package {', '.join(missing)}",
                hint="run `apt-get update` (the base image's packages come from apt's lists)",
            )
        found.update(records)
        wanted = {name for package in records.values() for name in _depends_of(package.stanza)}
        pending = sorted(wanted - set(found) - set(EXCLUDED))
    return [found[name] for name in sorted(found)]


APT_LISTS = Path("/var/lib/apt/lists")


def resolve_cached(roots: Iterable[str], cache: Path) -> list[DebianPackage]:
    """`resolve`, remembered per state of apt's lists (asking apt-cache takes seconds):
    the same lists resolve to the same packages."""
    key = digest_of(canonical_json({"roots": sorted(roots), "lists": lists_fingerprint()}))
    record = cache / f"resolved-{key.removeprefix('sha256:')[:32]}.json"
    try:
        return [DebianPackage(**fields) for fields in json.loads(record.read_text())]
    except (OSError, ValueError, TypeError):
        pass  # absent or unreadable: ask apt
    packages = resolve(roots)
    cache.mkdir(parents=True, exist_ok=True)
    temporary = record.with_name(f".{record.name}.{os.getpid()}")
    temporary.write_text(json.dumps([dataclasses.asdict(p) for p in packages], indent=1))
    os.replace(temporary, record)
    return packages


def lists_fingerprint() -> list[list[str | int]]:
    """apt's package lists by name, size and modification time."""
    try:
        files = sorted(APT_LISTS.glob("*_Packages*"))
        return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    except OSError:
        return []


def apt_show(names: list[str]) -> dict[str, DebianPackage]:
    """apt's candidate record of each name (a purely virtual name has none)."""
    done = _run(["apt-cache", "show", "--no-all-versions", *names])
    text = done.stdout.decode(errors="replace")
    records = [parse_stanza(stanza) for stanza in text.split("\n\n") if stanza.strip()]
    return {package.name: package for package in records}


def parse_stanza(text: str) -> DebianPackage:
    fields = stanza_fields(text)
    try:
        name, version, architecture = fields["Package"], fields["Version"], fields["Architecture"]
        sha256 = fields["SHA256"]
    except KeyError as missing:
        raise ConveyorError(f"apt's record lacks {missing}: {text[:80]!r}") from None
    source = fields.get("Source", name).split(" ")[0]
    kept = [line for line in text.strip().splitlines() if _kept_line(line)]
    return DebianPackage(name, version, architecture, sha256, source, "\n".join(kept))


def stanza_fields(text: str) -> dict[str, str]:
    """The single-line fields of a Debian control stanza (continuations are dropped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if line[:1] in (" ", "\t") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


# The status file keeps what identifies a package, not apt's download details.
_STATUS_FIELDS = (
    "Package", "Source", "Version", "Architecture", "Maintainer", "Installed-Size",
    "Depends", "Pre-Depends", "Multi-Arch", "Section", "Priority", "Homepage",
)  # fmt: skip


def _kept_line(line: str) -> bool:
    return line.partition(":")[0] in _STATUS_FIELDS and not line.startswith((" ", "\t"))


def _depends_of(stanza: str) -> list[str]:
    fields = stanza_fields(stanza)
    names = []
    for key in ("Pre-Depends", "Depends"):
        for group in filter(None, (g.strip() for g in fields.get(key, "").split(","))):
            first = group.split("|")[0].strip()
            names.append(first.split(" ")[0].split("(")[0].split(":")[0])
    return names


def download(packages: Iterable[DebianPackage], cache: Path) -> list[Path]:
    """Each package's .deb in `cache`, fetched by apt when absent, its SHA256 checked."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = list(packages)
    absent = [p for p in wanted if not _verified(cache / p.file_name, p.sha256)]
    if absent:
        done = _run(["apt-get", "download", "-q", *(p.pin for p in absent)], cwd=cache)
        if done.returncode != 0:
            tail = " | ".join(done.stderr.decode(errors="replace").strip().splitlines()[-3:])
            raise ConveyorError(f"apt-get download failed (exit {done.returncode}): {tail}")
    for package in wanted:
        if not _verified(cache / package.file_name, package.sha256):
            (cache / package.file_name).unlink(missing_ok=True)
            raise ConveyorError(f"{package.file_name} does not match apt's SHA256")
    return [cache / p.file_name for p in wanted]


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """apt's and dpkg's tools, with a user error when they are missing or hang."""
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, check=False, timeout=_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConveyorError(
            f"cannot run {argv[0]} for the Python base image: {error}",
            hint="the base is built from Debian packages: apt and dpkg-deb (Debian 12) are needed",
        ) from None


def _verified(path: Path, sha256: str) -> bool:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return False
    return digest == sha256


def deb_entries(deb: Path) -> Iterator[LayerEntry]:
    """The files, symlinks and directories a .deb ships, as layer entries (absolute
    paths; a member that climbs out with `..` is refused by `normalise_path`)."""
    done = _run(["dpkg-deb", "--fsys-tarfile", str(deb)])
    if done.returncode != 0:
        raise ConveyorError(f"cannot read {deb.name}: {done.stderr.decode(errors='replace')}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as archive:
        for member in archive:
            if member.name.strip("./") == "":
                continue  # the archive's root, "./"
            path = "/" + "/".join(normalise_path(member.name))
            yield _entry(archive, member, path, deb.name)


def _entry(archive: tarfile.TarFile, member: tarfile.TarInfo, path: str, deb: str) -> LayerEntry:
    if member.isdir():
        return LayerEntry.empty_directory(path)
    if member.issym():
        return LayerEntry.symlink(path, member.linkname)
    if member.isfile() or member.islnk():  # a hard link is stored as a copy
        handle = archive.extractfile(member)
        if handle is None:
            raise ConveyorError(f"{deb}: {path} has no content")
        return LayerEntry.of_bytes(path, handle.read(), executable=bool(member.mode & 0o111))
    raise ConveyorError(f"{deb}: {path} is neither a file, a link nor a directory")
