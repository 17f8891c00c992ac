"""The real advisories: the PyPA advisory database (CC-BY 4.0, pypa/advisory-database at
commit 3ccb6125, 2024-10-10), unpacked once per session and imported into one database.

The tarball is checked in, with its licence and attribution, in tests/data/osv/;
`CONVEYOR_OSV_DATA` may point at another copy.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.supply.osv.db import ImportReport, VulnDB

TARBALL_NAME = "pypa-advisory-database-2024-10-10.tar.gz"
TEST_DATA = Path(__file__).resolve().parents[2] / "data" / "osv"
ADVISORIES = 2661  # files in the tarball's vulns/ tree


def advisory_tarball() -> Path:
    override = os.environ.get("CONVEYOR_OSV_DATA")
    candidate = Path(override) if override else TEST_DATA / TARBALL_NAME
    if not candidate.is_file():
        pytest.fail(f"the advisory tarball is missing: {candidate}")
    return candidate


def unpack_advisories(tarball: Path, target: Path) -> None:
    """Folders and regular files only, which is all the advisory data holds. Member by
    member: tarfile's `filter=` is missing on Python 3.11.2, the oldest Python supported."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.name.startswith("/") or ".." in parts:
                pytest.fail(f"{tarball} holds an unsafe path {member.name!r}")
            path = target.joinpath(*parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                path.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None
                path.write_bytes(source.read())


@pytest.fixture(scope="session")
def tarball() -> Path:
    return advisory_tarball()


@pytest.fixture(scope="session")
def advisories_dir(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pypa")
    unpack_advisories(tarball, target)
    return target / "vulns"


@pytest.fixture(scope="session")
def imported(
    advisories_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VulnDB, ImportReport]]:
    with VulnDB(tmp_path_factory.mktemp("osv-db")) as db:
        yield db, db.import_path(advisories_dir)


@pytest.fixture(scope="session")
def real_db(imported: tuple[VulnDB, ImportReport]) -> VulnDB:
    return imported[0]
