"""An image's vulnerability scan: its Python packages (from the layers' dist-info)
matched against the offline OSV database, then gated with the shared exceptions file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from conveyor.findings.exceptions import load_exceptions
from conveyor.findings.gate import GateDecision
from conveyor.findings.model import Finding
from conveyor.spec.images import VulnGate as VulnGatePolicy
from conveyor.supply.oci.model import Manifest
from conveyor.supply.oci.store import ImageStore
from conveyor.supply.osv.db import DBStatus, VulnDB
from conveyor.supply.osv.scan import VulnGate, report_json, sarif_log, scan_packages, to_findings
from conveyor.supply.packages import PYPI, Package, RecordedFile, packages_in_layers


@dataclass(frozen=True)
class ImageScan:
    image: str  # repository@digest
    packages: list[Package]
    findings: list[Finding]
    decision: GateDecision
    database: DBStatus

    @property
    def db_digest(self) -> str:
        return self.database.digest

    @property
    def report(self) -> dict[str, Any]:
        return report_json(self.findings, self.database, self.decision)

    @property
    def sarif(self) -> dict[str, Any]:
        return sarif_log(self.findings)

    @property
    def vex(self) -> str:
        from conveyor.supply.osv.vex import vex_json  # cyclonedx: only when asked for

        return vex_json(self.findings)


def image_packages(
    store: ImageStore, repository: str, digest: str, cache_dir: Path | None = None
) -> list[Package]:
    """The Python packages in an image. An image never changes, so with `cache_dir` the
    answer is kept by digest and the layers (megabytes of gzip) are read only once."""
    cached = cache_dir / f"{digest.removeprefix('sha256:')}.json" if cache_dir else None
    if cached is not None and cached.is_file():
        return [_package(item) for item in json.loads(cached.read_text())]
    manifest = Manifest.from_bytes(store.get_manifest(repository, digest)[0])
    layers = (store.get_blob(repository, layer.digest) for layer in manifest.layers)
    packages = packages_in_layers(layers)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(".tmp")
        temporary.write_text(json.dumps([asdict(p) for p in packages]))
        temporary.replace(cached)
    return packages


def _package(item: dict[str, Any]) -> Package:
    files = tuple(RecordedFile(**f) for f in item.pop("files"))
    return Package(**{**item, "requires": tuple(item["requires"]), "files": files})


def scan_image(
    store: ImageStore,
    repository: str,
    digest: str,
    *,
    db: VulnDB,
    policy: VulnGatePolicy,
    project_dir: Path,
    today: date,
    cache_dir: Path | None = None,
) -> ImageScan:
    packages = image_packages(store, repository, digest, cache_dir)
    image = f"{repository}@{digest}"
    # The advisory database is PyPI's: Debian packages are listed, not matched against it.
    python = [(p.name, p.version) for p in packages if p.ecosystem == PYPI]
    vulnerabilities = scan_packages(db.index(), python)
    findings = to_findings(vulnerabilities, source=f"image:{image}")
    gate = VulnGate.model_validate(policy.model_dump())
    decided, decision = gate.decide(findings, load_exceptions(project_dir), today)
    return ImageScan(image, packages, decided, decision, db.status())
