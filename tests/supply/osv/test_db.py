"""Importing OSV advisories: the real PyPA database from a folder, a zip of JSON and the
tarball itself, and bad advisories that must be counted, not crash the import."""

from __future__ import annotations

import json
import re
import sqlite3
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from conveyor.errors import ConveyorError
from conveyor.supply.osv.db import DB_FILE, ImportReport, VulnDB

from .conftest import ADVISORIES

GOOD = """\
id: TEST-1
modified: 2024-01-03T22:31:36Z
summary: a good one
affected:
- package: {ecosystem: PyPI, name: Some_Package}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "0"}, {fixed: "1.10"}]
"""
UNKNOWN_ECOSYSTEM = """\
id: TEST-2
modified: "2024-01-01T00:00:00Z"
affected:
- package: {ecosystem: npm, name: left-pad}
  ranges:
  - type: SEMVER
    events: [{introduced: "0"}, {fixed: "1.0.0"}]
"""
UNPARSABLE = """\
id: TEST-3
modified: "2024-01-01T00:00:00Z"
affected:
- package: {ecosystem: PyPI, name: steam}
  ranges:
  - type: ECOSYSTEM
    events: [{introduced: "0"}, {fixed: "2019-09-12"}]
"""
INVALID_YAML = "id: TEST-4\naffected: [unclosed\n"
NO_MODIFIED = '{"id": "TEST-5", "affected": []}'
NOT_A_MAPPING = "- just\n- a list\n"


def test_the_real_database_imports_with_its_known_oddities_counted(
    imported: tuple[VulnDB, ImportReport],
) -> None:
    db, report = imported

    # Two advisories name a fix PEP 440 cannot order (steam "2019-09-12", binderhub
    # "0.2.0-n653") and list no versions: nothing is left to match them by.
    assert report.skipped_unparsable_version == 2
    assert report.imported == ADVISORIES - 2
    assert report.skipped_unknown_ecosystem == 0
    assert report.skipped_invalid == []
    assert report.withdrawn == 10
    status = db.status()
    assert status.advisories == ADVISORIES - 2
    assert status.digest == report.db_digest
    assert status.digest.startswith("sha256:")
    assert status.packages > 600
    assert status.imported_at is not None


def test_severity_is_computed_from_the_cvss_vector(real_db: VulnDB) -> None:
    skywalking = real_db.advisory("PYSEC-2020-342")

    assert skywalking is not None
    assert skywalking["severity"] == [
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}
    ]
    (match,) = real_db.index().matches("apache-skywalking", "8.0.0")
    assert (match.advisory.severity.score, match.advisory.severity.level) == (9.8, "critical")


def test_the_normalised_advisory_keeps_aliases_and_pep_503_names(real_db: VulnDB) -> None:
    advisory = real_db.advisory("PYSEC-2020-341")

    assert advisory is not None
    assert advisory["affected"][0]["package"] == "jw-util"
    assert advisory["affected"][0]["name"] == "jw.util"
    assert real_db.advisory("PYSEC-2018-28")["aliases"] == [  # type: ignore[index]
        "CVE-2018-18074",
        "GHSA-x84v-xcm2-53pg",
    ]
    assert real_db.advisory("NOT-AN-ID") is None


def test_a_zip_of_json_gives_the_same_digest_as_the_yaml_folder(
    imported: tuple[VulnDB, ImportReport], advisories_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as export:
        for file in sorted(advisories_dir.rglob("*.yaml")):
            document = yaml.load(file.read_text(), Loader=yaml.CBaseLoader)
            export.writestr(f"{file.stem}.json", json.dumps(document))

    with VulnDB(tmp_path / "db") as db:
        report = db.import_path(archive)

    assert report.imported == imported[1].imported
    assert report.db_digest == imported[1].db_digest


def test_the_tarball_imports_as_is_with_the_same_digest(
    imported: tuple[VulnDB, ImportReport], tarball: Path, tmp_path: Path
) -> None:
    with VulnDB(tmp_path / "db") as db:
        report = db.import_path(tarball)
        assert db.status().sources == (str(tarball),)

    assert report.db_digest == imported[1].db_digest


def test_bad_advisories_are_counted_and_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "advisories"
    (folder / "nested").mkdir(parents=True)
    files = {
        "good.yaml": GOOD,
        "nested/npm.yml": UNKNOWN_ECOSYSTEM,
        "unparsable.yaml": UNPARSABLE,
        "broken.yaml": INVALID_YAML,
        "no-modified.json": NO_MODIFIED,
        "list.yaml": NOT_A_MAPPING,
        "README.md": "not an advisory, not read",
    }
    for name, text in files.items():
        (folder / name).write_text(text)

    with VulnDB(tmp_path / "db") as db:
        report = db.import_path(folder)
        (match,) = db.index().matches("some.package", "1.9")
        assert db.index().matches("some-package", "1.10") == []

    assert (report.imported, report.skipped_unknown_ecosystem) == (1, 1)
    assert report.skipped_unparsable_version == 1
    assert sorted(s.name for s in report.skipped_invalid) == [
        "broken.yaml",
        "list.yaml",
        "no-modified.json",
    ]
    assert all(s.reason for s in report.skipped_invalid)
    assert match.advisory.id == "TEST-1"
    assert match.fixed_in == "1.10"  # YAML's 1.10 stays a version, not the float 1.1


def test_a_newer_advisory_replaces_the_stored_one_and_an_older_does_not(tmp_path: Path) -> None:
    newer = GOOD.replace("2024-01-03T22:31:36Z", "2024-05-01T00:00:00.5Z").replace(
        '{fixed: "1.10"}', '{fixed: "1.12"}'
    )
    older = GOOD.replace("2024-01-03T22:31:36Z", "2023-01-01T00:00:00Z").replace(
        '{fixed: "1.10"}', '{fixed: "1.11"}'
    )
    (tmp_path / "v1.yaml").write_text(GOOD)
    (tmp_path / "v2.yaml").write_text(newer)
    (tmp_path / "v0.yaml").write_text(older)

    with VulnDB(tmp_path / "db") as db:
        first = db.import_path(tmp_path / "v1.yaml")
        second = db.import_path(tmp_path / "v2.yaml")
        third = db.import_path(tmp_path / "v0.yaml")
        (match,) = db.index().matches("some-package", "1.0")
        status = db.status()

    assert match.fixed_in == "1.12"
    assert first.db_digest != second.db_digest == third.db_digest
    assert status.advisories == 1
    assert len(status.sources) == 3


def test_an_empty_database_refuses_to_scan(tmp_path: Path) -> None:
    with VulnDB(tmp_path / "db") as db, pytest.raises(ConveyorError, match="no advisories"):
        db.index()


def test_a_path_that_is_no_export_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.zip").write_text("not a zip")

    with VulnDB(tmp_path / "db") as db:
        with pytest.raises(ConveyorError, match="cannot import"):
            db.import_path(tmp_path / "notes.txt")
        with pytest.raises(ConveyorError, match="not a readable zip"):
            db.import_path(tmp_path / "fake.zip")
        with pytest.raises(ConveyorError, match="cannot import"):
            db.import_path(tmp_path / "missing")


def test_the_database_is_as_old_as_its_newest_advisory_not_its_import(
    imported: tuple[VulnDB, ImportReport], advisories_dir: Path
) -> None:
    db, _ = imported
    dated = re.compile(r"^\"?modified\"?:\s*\"?([0-9][0-9T:.+\-Z]+)", re.MULTILINE)
    newest = max(
        datetime.fromisoformat(found).astimezone(UTC)
        for path in advisories_dir.rglob("*")
        if path.is_file()
        for found in dated.findall(path.read_text())
    )

    status = db.status()

    assert status.newest_advisory == newest.isoformat(timespec="seconds")
    assert status.imported_at is not None and status.imported_at > status.newest_advisory
    now = datetime.now(UTC)
    age = status.age_seconds(now)
    assert age is not None and age == pytest.approx((now - newest).total_seconds(), abs=1)
    assert age > 7 * 86400  # the 2024-10-10 export is old however recently imported


def test_each_import_records_the_newest_advisory_held(tmp_path: Path) -> None:
    newer = GOOD.replace("TEST-1", "TEST-9").replace(
        "2024-01-03T22:31:36Z", "2024-06-01T08:00:00+02:00"
    )
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(newer)

    with VulnDB(tmp_path / "db") as db:
        db.import_path(tmp_path / "a.yaml")
        first = db.status().newest_advisory
        db.import_path(tmp_path / "b.yaml")
        db.import_path(tmp_path / "a.yaml")  # an older one again: the database is still newer
        last = db.status().newest_advisory

    assert (first, last) == ("2024-01-03T22:31:36+00:00", "2024-06-01T06:00:00+00:00")


def test_a_database_made_before_advisories_were_dated_gains_the_column(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    with VulnDB(tmp_path / "db") as db:
        db.import_path(tmp_path / "a.yaml")
    with sqlite3.connect(tmp_path / "db" / DB_FILE) as conn:  # as an older Conveyor left it
        conn.execute("ALTER TABLE imports DROP COLUMN newest_advisory")

    with VulnDB(tmp_path / "db") as db:
        status = db.status()

    assert status.newest_advisory == "2024-01-03T22:31:36+00:00"  # computed from the advisories
    with sqlite3.connect(tmp_path / "db" / DB_FILE) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(imports)")}
    assert "newest_advisory" in columns
