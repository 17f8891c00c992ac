"""The offline vulnerability database of a project, and scans of its images."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from conveyor.service.images import image_store, images_config, parse_ref, resolve
from conveyor.service.project import Project
from conveyor.supply.imagescan import ImageScan
from conveyor.supply.imagescan import scan_image as scan_stored_image
from conveyor.supply.osv.db import VulnDB


def vulndb_path(project: Project) -> Path:
    return project.directory / images_config(project).vulndb


def open_vulndb(spec: Path | None) -> VulnDB:
    project = Project.locate(spec)
    path = vulndb_path(project)
    path.mkdir(parents=True, exist_ok=True)
    return VulnDB(path)


def scan_image(spec: Path | None, image: str) -> ImageScan:
    project = Project.locate(spec)
    ref = parse_ref(image)
    store = image_store(project)
    digest = resolve(store, ref)
    with VulnDB(vulndb_path(project)) as db:
        return scan_stored_image(
            store,
            ref.name,
            digest,
            db=db,
            policy=images_config(project).vulnerabilities,
            project_dir=project.directory,
            today=date.today(),
        )
