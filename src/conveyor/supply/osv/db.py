"""The offline vulnerability database: OSV advisories imported into a local SQLite index.

Why SQLite (SQLAlchemy Core, like the rest of Conveyor's state): an import is one
transaction, so a scan never sees half a database; a later import replaces advisories by id
(the newer `modified` wins) instead of rewriting everything; and `status` answers without
loading the advisories. Each advisory is kept in a normalised form (`doc`, canonical JSON:
sorted keys, PyPI entries only, PEP 503 names) next to the columns the matcher reads.

The database digest is sha256 over the sorted (id, sha256 of the normalised advisory)
pairs: the same advisories give the same digest whether they came from a folder, a zip or
a tarball, in JSON or YAML.

The database's age is that of its newest advisory (the latest `modified`), recorded with
each import: a two-year-old export imported today is two years old. This file is not the
store and has no Alembic history; a column added later is added at open when missing
(`_add_missing_columns`), and a value an older Conveyor did not record is computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from conveyor.errors import ConveyorError
from conveyor.supply.osv.advisory import (
    Loaded,
    Normalised,
    Outcome,
    normalise_document,
    read_documents,
)
from conveyor.supply.osv.match import (
    AdvisoryInfo,
    AffectedRow,
    MatchIndex,
    ScoreMethod,
    Severity,
    SeverityLevel,
)

DB_FILE = "osv.db"

metadata = sa.MetaData()
advisories = sa.Table(
    "advisories",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("modified", sa.String, nullable=False),
    sa.Column("withdrawn", sa.String, nullable=True),
    sa.Column("aliases", sa.JSON, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("severity_level", sa.String, nullable=False),
    sa.Column("severity_score", sa.Double, nullable=True),
    sa.Column("severity_vector", sa.String, nullable=True),
    sa.Column("severity_method", sa.String, nullable=True),
    sa.Column("doc", sa.Text, nullable=False),
    sa.Column("doc_sha256", sa.String, nullable=False),
)
affected = sa.Table(
    "affected",
    metadata,
    sa.Column("advisory_id", sa.String, sa.ForeignKey("advisories.id"), index=True),
    sa.Column("package", sa.String, nullable=False, index=True),
    sa.Column("ranges", sa.JSON, nullable=False),  # [[[kind, version], ...], ...]
    sa.Column("versions", sa.JSON, nullable=False),  # canonical versions
)
imports = sa.Table(
    "imports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("imported_at", sa.String, nullable=False),
    sa.Column("digest", sa.String, nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    # The latest `modified` of the advisories held after this import (ISO 8601, UTC).
    sa.Column("newest_advisory", sa.String, nullable=True),
)
_BATCH = 500  # ids per IN (...) clause, under SQLite's variable limit


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    source: str
    imported: int  # advisories stored (withdrawn ones included)
    skipped_unknown_ecosystem: int  # no PyPI entry
    skipped_unparsable_version: int  # nothing left to match once unparsable ranges went
    skipped_invalid: list[SkippedFile] = field(default_factory=list)
    withdrawn: int = 0
    dropped_ranges: int = 0  # ranges left out of kept advisories (unparsable version)
    db_digest: str = ""


@dataclass(frozen=True)
class DBStatus:
    digest: str
    advisories: int
    packages: int
    imported_at: str | None  # ISO 8601, UTC, of the latest import
    sources: tuple[str, ...]  # every import, oldest first
    newest_advisory: str | None = None  # ISO 8601, UTC: the database is as old as this

    def age_seconds(self, now: datetime) -> float | None:
        """How old the advisories are: now minus the newest one's `modified`."""
        if self.newest_advisory is None:
            return None
        return (now - datetime.fromisoformat(self.newest_advisory)).total_seconds()


class VulnDB:
    """The advisories under `directory` (created on first use). Close it, or use `with`."""

    def __init__(self, directory: Path) -> None:
        if directory.exists() and not directory.is_dir():
            raise ConveyorError(
                f"the vulnerability database path {directory} is a file, not a directory"
            )
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._engine = sa.create_engine(f"sqlite:///{(directory / DB_FILE).resolve()}")
        metadata.create_all(self._engine)
        _add_missing_columns(self._engine)
        self._index: MatchIndex | None = None

    def __enter__(self) -> VulnDB:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    def import_path(self, path: Path) -> ImportReport:
        """Import every advisory of a folder, a `.zip` or a `.tar.gz`; bad ones are counted."""
        tally = _Tally()
        accepted: dict[str, Normalised] = {}
        for document in read_documents(path):
            loaded = normalise_document(document)
            tally.count(document.name, loaded)
            if loaded.advisory is not None:
                accepted[loaded.advisory.id] = loaded.advisory
        with self._engine.begin() as conn:
            _store(conn, accepted.values())
            digest = _digest(conn)
            report = tally.report(str(path), digest)
            conn.execute(
                imports.insert().values(
                    source=str(path),
                    imported_at=_now(),
                    digest=digest,
                    report=_as_json(report),
                    newest_advisory=_newest_advisory(conn),
                )
            )
        self._index = None
        return report

    def status(self) -> DBStatus:
        with self._engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(advisories)).scalar_one()
            packages = conn.execute(
                sa.select(sa.func.count(sa.distinct(affected.c.package)))
            ).scalar_one()
            history = conn.execute(
                sa.select(
                    imports.c.source, imports.c.imported_at, imports.c.newest_advisory
                ).order_by(imports.c.id)
            ).all()
            newest = history[-1].newest_advisory if history else None
            return DBStatus(
                digest=_digest(conn),
                advisories=count,
                packages=packages,
                imported_at=history[-1].imported_at if history else None,
                sources=tuple(row.source for row in history),
                newest_advisory=newest or _newest_advisory(conn),
            )

    def advisory(self, advisory_id: str) -> dict[str, Any] | None:
        """The normalised advisory, or None when the database does not hold it."""
        with self._engine.connect() as conn:
            doc = conn.execute(
                sa.select(advisories.c.doc).where(advisories.c.id == advisory_id)
            ).scalar_one_or_none()
        return None if doc is None else dict(json.loads(doc))

    def index(self) -> MatchIndex:
        """The in-memory match index, built once and rebuilt only after an import."""
        if self._index is None:
            with self._engine.connect() as conn:
                digest = _digest(conn)
                rows = list(_affected_rows(conn))
            if not rows:
                raise ConveyorError(
                    f"the vulnerability database in {self.directory} holds no advisories",
                    hint="import some first, e.g. an OSV export folder, all.zip or .tar.gz",
                )
            self._index = MatchIndex(rows, digest)
        return self._index


class _Tally:
    def __init__(self) -> None:
        self.counts = dict.fromkeys(Outcome, 0)
        self.invalid: list[SkippedFile] = []
        self.withdrawn = 0
        self.dropped_ranges = 0

    def count(self, name: str, loaded: Loaded) -> None:
        self.counts[loaded.outcome] += 1
        if loaded.outcome is Outcome.INVALID:
            self.invalid.append(SkippedFile(name, loaded.problem))
        if loaded.advisory is not None:
            self.dropped_ranges += loaded.advisory.dropped_ranges
            self.withdrawn += loaded.advisory.withdrawn is not None

    def report(self, source: str, digest: str) -> ImportReport:
        return ImportReport(
            source=source,
            imported=self.counts[Outcome.IMPORTED],
            skipped_unknown_ecosystem=self.counts[Outcome.UNKNOWN_ECOSYSTEM],
            skipped_unparsable_version=self.counts[Outcome.UNPARSABLE_VERSION],
            skipped_invalid=self.invalid,
            withdrawn=self.withdrawn,
            dropped_ranges=self.dropped_ranges,
            db_digest=digest,
        )


def _store(conn: sa.Connection, items: Iterable[Normalised]) -> None:
    """Insert new advisories; replace stored ones unless the stored one is newer."""
    stored = {
        row.id: row.modified
        for row in conn.execute(sa.select(advisories.c.id, advisories.c.modified))
    }
    fresh = [
        item
        for item in items
        if item.id not in stored or _sortable(stored[item.id]) <= _sortable(item.modified)
    ]
    ids = [item.id for item in fresh if item.id in stored]
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        conn.execute(affected.delete().where(affected.c.advisory_id.in_(batch)))
        conn.execute(advisories.delete().where(advisories.c.id.in_(batch)))
    if fresh:
        conn.execute(advisories.insert(), [_advisory_row(item) for item in fresh])
        entries = [row for item in fresh for row in item.affected_rows()]
        if entries:
            conn.execute(affected.insert(), entries)


def _advisory_row(item: Normalised) -> dict[str, Any]:
    severity = item.severity
    return {
        "id": item.id,
        "modified": item.modified,
        "withdrawn": item.withdrawn,
        "aliases": list(item.aliases),
        "summary": item.summary,
        "severity_level": severity.level.value,
        "severity_score": severity.score,
        "severity_vector": severity.vector,
        "severity_method": severity.method.value if severity.method else None,
        "doc": item.canonical_json,
        "doc_sha256": hashlib.sha256(item.canonical_json.encode()).hexdigest(),
    }


def _digest(conn: sa.Connection) -> str:
    hasher = hashlib.sha256()
    rows = conn.execute(
        sa.select(advisories.c.id, advisories.c.doc_sha256).order_by(advisories.c.id)
    )
    for advisory_id, doc_sha256 in rows:
        hasher.update(f"{advisory_id}\t{doc_sha256}\n".encode())
    return "sha256:" + hasher.hexdigest()


def _affected_rows(conn: sa.Connection) -> Iterator[AffectedRow]:
    query = (
        sa.select(
            affected.c.package,
            affected.c.ranges,
            affected.c.versions,
            advisories.c.id,
            advisories.c.aliases,
            advisories.c.summary,
            advisories.c.severity_level,
            advisories.c.severity_score,
            advisories.c.severity_vector,
            advisories.c.severity_method,
        )
        .join(advisories, advisories.c.id == affected.c.advisory_id)
        .where(advisories.c.withdrawn.is_(None))
    )
    infos: dict[str, AdvisoryInfo] = {}
    for row in conn.execute(query):
        info = infos.get(row.id)
        if info is None:
            severity = Severity(
                level=SeverityLevel(row.severity_level),
                score=row.severity_score,
                vector=row.severity_vector,
                method=ScoreMethod(row.severity_method) if row.severity_method else None,
            )
            info = AdvisoryInfo(row.id, tuple(row.aliases), row.summary, severity)
            infos[row.id] = info
        yield AffectedRow(row.package, info, row.ranges, row.versions)


def _newest_advisory(conn: sa.Connection) -> str | None:
    """The latest `modified` of the stored advisories (withdrawn ones too: a withdrawal
    is news), in UTC; None for an empty database. Texts that are not RFC 3339 are left
    out: they date nothing."""
    moments = (_utc(text) for text in conn.execute(sa.select(advisories.c.modified)).scalars())
    newest = max((moment for moment in moments if moment is not None), default=None)
    return None if newest is None else newest.isoformat(timespec="seconds")


def _utc(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _add_missing_columns(engine: sa.Engine) -> None:
    """Columns added to `imports` after databases were made without them (nullable)."""
    present = {column["name"] for column in sa.inspect(engine).get_columns("imports")}
    with engine.begin() as conn:
        for column in imports.columns:
            if column.name not in present:
                kind = column.type.compile(dialect=engine.dialect)
                conn.exec_driver_sql(f"ALTER TABLE imports ADD COLUMN {column.name} {kind}")


def _sortable(text: str) -> str:
    """RFC 3339 `modified` in one UTC form, so fractions of seconds compare right."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _as_json(report: ImportReport) -> dict[str, Any]:
    return {
        "imported": report.imported,
        "skipped_unknown_ecosystem": report.skipped_unknown_ecosystem,
        "skipped_unparsable_version": report.skipped_unparsable_version,
        "skipped_invalid": [[s.name, s.reason] for s in report.skipped_invalid],
        "withdrawn": report.withdrawn,
        "dropped_ranges": report.dropped_ranges,
    }
