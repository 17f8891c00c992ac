"""The `images:` section of conveyor.yml: the image store, signing, the vulnerability
database and the admission policy that guards every deploy."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from conveyor.spec.types import Duration


class AdmissionPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trusted_keys: list[Path] = Field(
        min_length=1, description="Pinned public key files, or directories of *.pub files."
    )
    allowed_repositories: list[str] = Field(
        min_length=1, description="Globs on the provenance's source repository URL or path."
    )
    allowed_branches: list[str] = Field(
        default_factory=lambda: ["main"], min_length=1, description="Globs on the built branch."
    )
    require_provenance: bool = True
    require_sbom: bool = True
    require_scan: bool = True
    require_scan_passed: bool = True
    max_db_age: Duration | None = Field(
        default=86400.0, description="The oldest vulnerability database a scan may have used."
    )

    def relative_to(self, base: Path) -> AdmissionPolicy:
        """Key paths resolved against `base` (the directory of the file that set them)."""
        return self.model_copy(update={"trusted_keys": [base / p for p in self.trusted_keys]})


class FailSeverity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class VulnGate(BaseModel):
    """What blocks an image: non-waived vulnerabilities at or above a severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fail_on_severity: FailSeverity = Field(
        default=FailSeverity.HIGH,
        description="Block on vulnerabilities at or above this severity (critical .. low).",
    )
    fixable_only: bool = Field(
        default=False, description="Block only when a fixed version above the installed exists."
    )
    unknown_blocks: bool = Field(
        default=True,
        description="An advisory without a score or rating blocks: most PyPA advisories have "
        "none, and an unknown severity cannot be shown to be below the threshold.",
    )


class ImagesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    repository: str | None = Field(
        default=None, description="The image name; default: the pipeline's name."
    )
    registry: str | None = Field(
        default=None, description="Push target, e.g. 127.0.0.1:5000; none: the local store only."
    )
    insecure_registry: bool = Field(default=False, description="Allow plain http (loopback).")
    signing_key: Path = Field(
        default=Path(".conveyor/keys/conveyor.key"), description="The ed25519 private key."
    )
    vulndb: Path = Field(
        default=Path(".conveyor/vulndb"),
        description="The offline OSV database folder (`conveyor vulndb import`).",
    )
    vulnerabilities: VulnGate = Field(default_factory=VulnGate)
    admission: AdmissionPolicy | None = Field(
        default=None, description="Checked before every deploy, manual ones included."
    )
