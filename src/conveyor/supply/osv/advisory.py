"""Reading OSV advisories from a folder, a zip or a tarball, and normalising them.

Nothing here raises for a bad advisory: each document comes back with an `Outcome`
(imported, unknown ecosystem, unparsable version, invalid) so an import counts what it
skipped instead of stopping at the first oddity of a large export.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conveyor import safe_yaml
from conveyor.errors import ConveyorError
from conveyor.supply.osv.match import Severity, severity_of
from conveyor.supply.osv.versions import (
    EventKind,
    canonical_version,
    normalize_name,
    parse_event,
)

ECOSYSTEM = "PyPI"
SUFFIXES = (".json", ".yaml", ".yml")
MAX_DOCUMENT_BYTES = 16 << 20  # one advisory; anything larger is not an advisory
_SUMMARY_CHARS = 160


class Outcome(StrEnum):
    IMPORTED = "imported"
    UNKNOWN_ECOSYSTEM = "unknown-ecosystem"
    UNPARSABLE_VERSION = "unparsable-version"
    INVALID = "invalid"


@dataclass(frozen=True)
class Document:
    name: str  # the file's path in its folder or archive
    data: bytes


def read_documents(path: Path) -> Iterator[Document]:
    """Every `*.json`/`*.yaml`/`*.yml` under a folder, in a `.zip`, or in a `.tar.gz`."""
    if path.is_dir():
        yield from _folder(path)
    elif path.name.endswith(".zip") and path.is_file():
        yield from _zip(path)
    elif path.name.endswith((".tar.gz", ".tgz")) and path.is_file():
        yield from _tarball(path)
    elif path.name.endswith(SUFFIXES) and path.is_file():
        yield Document(path.name, path.read_bytes())
    else:
        raise ConveyorError(
            f"cannot import advisories from {path}: not a folder, .zip, .tar.gz or advisory",
            hint="point at an OSV export: a folder of *.json/*.yaml, all.zip or a .tar.gz",
        )


def _folder(root: Path) -> Iterator[Document]:
    for file in sorted(root.rglob("*")):
        if file.is_file() and file.name.endswith(SUFFIXES):
            yield Document(file.relative_to(root).as_posix(), file.read_bytes())


def _zip(path: Path) -> Iterator[Document]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.endswith(SUFFIXES):
                    continue
                too_large = info.file_size > MAX_DOCUMENT_BYTES
                yield Document(info.filename, b"" if too_large else archive.read(info))
    except zipfile.BadZipFile as error:
        raise ConveyorError(f"{path} is not a readable zip archive: {error}") from None


def _tarball(path: Path) -> Iterator[Document]:
    # Members are read in memory, never extracted: no path in the archive touches the disk.
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if not member.isfile() or not member.name.endswith(SUFFIXES):
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                with handle:
                    too_large = member.size > MAX_DOCUMENT_BYTES
                    yield Document(member.name, b"" if too_large else handle.read())
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ConveyorError(f"{path} is not a readable .tar.gz archive: {error}") from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


class OsvPackage(_Model):
    ecosystem: str
    name: str = Field(min_length=1)


class OsvRange(_Model):
    type: str
    events: list[dict[str, str]] = Field(default_factory=list)


class OsvAffected(_Model):
    package: OsvPackage | None = None
    ranges: list[OsvRange] = Field(default_factory=list)
    versions: list[str] = Field(default_factory=list)


class OsvSeverity(_Model):
    type: str
    score: str


class OsvAdvisory(_Model):
    id: str = Field(min_length=1)
    modified: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    summary: str | None = None
    details: str | None = None
    published: str | None = None
    withdrawn: str | None = None
    severity: list[OsvSeverity] = Field(default_factory=list)
    affected: list[OsvAffected] = Field(default_factory=list)
    database_specific: dict[str, Any] | None = None

    @field_validator("summary", "details", "published", "withdrawn", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        return None if value == "" else value


@dataclass(frozen=True)
class Normalised:
    """An advisory reduced to what Conveyor uses, PyPI entries only."""

    id: str
    modified: str
    withdrawn: str | None
    aliases: tuple[str, ...]
    summary: str
    severity: Severity
    doc: dict[str, Any]
    dropped_ranges: int

    @property
    def canonical_json(self) -> str:
        return json.dumps(self.doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def affected_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "advisory_id": self.id,
                "package": entry["package"],
                "ranges": entry["ranges"],
                "versions": sorted({canonical_version(v) for v in entry["versions"]}),
            }
            for entry in self.doc["affected"]
        ]


@dataclass(frozen=True)
class Loaded:
    outcome: Outcome
    advisory: Normalised | None = None
    problem: str = ""


def normalise_document(document: Document) -> Loaded:
    try:
        raw = _parse(document)
        advisory = OsvAdvisory.model_validate(raw)
    except (ValueError, yaml.YAMLError, ValidationError) as error:
        return Loaded(Outcome.INVALID, problem=_first_line(str(error)))
    entries = [a for a in advisory.affected if a.package and a.package.ecosystem == ECOSYSTEM]
    if not entries:
        return Loaded(Outcome.UNKNOWN_ECOSYSTEM)
    affected, dropped = _affected(entries)
    if dropped and not any(entry["ranges"] or entry["versions"] for entry in affected):
        return Loaded(Outcome.UNPARSABLE_VERSION)
    return Loaded(Outcome.IMPORTED, _normalised(advisory, affected, dropped))


def _parse(document: Document) -> Any:
    if not document.data:
        raise ValueError("empty, or larger than an advisory can be")
    text = document.data.decode("utf-8")
    if document.name.endswith(".json"):
        return json.loads(text)
    # All scalars as strings: a YAML `1.10` must stay the version "1.10", not the float 1.1.
    return safe_yaml.load(text, safe_yaml.STRINGS_LOADER)


def _first_line(message: str) -> str:
    # Cut before splitting: a message quoting a large value is not worth reading whole.
    return " ".join(message[: safe_yaml.MAX_ECHO_CHARS * 4].split())[: safe_yaml.MAX_ECHO_CHARS]


def _affected(entries: list[OsvAffected]) -> tuple[list[dict[str, Any]], int]:
    """PyPI entries with their ECOSYSTEM ranges; a range with an unparsable version is
    dropped (and counted): PEP 440 cannot place it, and a guess could hide a vulnerability
    or invent one. GIT ranges are not about versions and are left out."""
    affected: list[dict[str, Any]] = []
    dropped = 0
    for entry in entries:
        if entry.package is None:
            continue  # the caller kept PyPI entries only; this narrows the type
        ranges = []
        for version_range in entry.ranges:
            if version_range.type != "ECOSYSTEM":
                continue
            events = _events(version_range)
            if events is None:
                dropped += 1
            else:
                ranges.append(events)
        affected.append(
            {
                "package": normalize_name(entry.package.name),
                "name": entry.package.name,
                "ranges": ranges,
                "versions": list(dict.fromkeys(v.strip() for v in entry.versions if v.strip())),
            }
        )
    return affected, dropped


def _events(version_range: OsvRange) -> list[list[str]] | None:
    events: list[list[str]] = []
    for event in version_range.events:
        for kind_text, version in event.items():
            try:
                kind = EventKind(kind_text)
            except ValueError:
                continue  # an event kind from a newer schema: not ours to judge
            if parse_event(kind, version) is None:
                return None
            events.append([kind.value, version.strip()])
    return events


def _normalised(advisory: OsvAdvisory, affected: list[dict[str, Any]], dropped: int) -> Normalised:
    rating = (advisory.database_specific or {}).get("severity")
    rating = rating if isinstance(rating, str) else None
    scores = [(s.type, s.score) for s in advisory.severity]
    aliases = tuple(sorted(set(advisory.aliases)))
    summary = _summary(advisory.summary, advisory.details)
    doc = {
        "id": advisory.id,
        "aliases": list(aliases),
        "summary": summary,
        "details": advisory.details or "",
        "published": advisory.published,
        "modified": advisory.modified,
        "withdrawn": advisory.withdrawn,
        "severity": [{"type": kind, "score": vector} for kind, vector in scores],
        "database_specific_severity": rating,
        "affected": affected,
    }
    return Normalised(
        id=advisory.id,
        modified=advisory.modified,
        withdrawn=advisory.withdrawn,
        aliases=aliases,
        summary=summary,
        severity=severity_of(scores, rating),
        doc=doc,
        dropped_ranges=dropped,
    )


def _summary(summary: str | None, details: str | None) -> str:
    """The summary, else the first sentence of the details (PYSEC advisories have no summary)."""
    text = " ".join((summary or details or "").split())
    if not summary:
        head, dot, _ = text.partition(". ")
        text = head + ("." if dot else "")
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"
