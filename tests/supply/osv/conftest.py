"""The real advisories: the PyPA advisory database (CC-BY 4.0, pypa/advisory-database at
commit 3ccb6125, 2024-10-10), unpacked once per session and imported into one database.

The tarball lives in the workplace's shared/ folder beside the repository, never in it;
`CONVEYOR_OSV_DATA` may point elsewhere.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.supply.osv.db import ImportReport, VulnDB

TARBALL_NAME = "pypa-advisory-database-2024-10-10.tar.gz"
ADVISORIES = 2661  # files in the tarball's vulns/ tree


def advisory_tarball() -> Path:
    override = os.environ.get("CONVEYOR_OSV_DATA")
    repository = Path(__file__).resolve().parents[3]
    candidates = [Path(override)] if override else []
    candidates.append(repository.parent / "shared" / "data" / "osv" / TARBALL_NAME)
    # Run as a job of Conveyor's own pipeline, the suite sits in a workspace checkout:
    # the project it was checked out from has shared/ beside it.
    project = os.environ.get("CONVEYOR_PROJECT_DIR")
    if project:
        candidates.append(Path(project).parent / "shared" / "data" / "osv" / TARBALL_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.fail(f"the advisory tarball is missing; looked at {[str(c) for c in candidates]}")


@pytest.fixture(scope="session")
def tarball() -> Path:
    return advisory_tarball()


@pytest.fixture(scope="session")
def advisories_dir(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pypa")
    with tarfile.open(tarball, "r:gz") as archive:
        archive.extractall(target, filter="data")
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
