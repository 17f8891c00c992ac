"""CycloneDX 1.6 VEX: what the scan found, per component, and what was decided about it.

Each finding (exceptions applied) becomes one vulnerability that `affects` its component
(by bom-ref, the package's purl). The analysis state says where it stands:

- waived by an exception: `not_affected`, the exception's reason, owner and expiry in
  `detail` (CycloneDX's `justification` is a closed list of codes, the reason free text);
- an exception that has expired: `exploitable` (someone looked and accepted the risk for
  a while; that time is over);
- anything else: `in_triage` (found by a scanner, not yet judged by a person), with the
  response `update` when a fixed version exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from cyclonedx.model import XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import (
    ImpactAnalysisAffectedStatus,
    ImpactAnalysisResponse,
    ImpactAnalysisState,
)
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityReference,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from conveyor import __version__
from conveyor.findings.model import Disposition, Finding
from conveyor.supply.osv.scan import ADVISORY_URL, TOOL, severity_level

_OSV = VulnerabilitySource(name="OSV", url=XsUri("https://osv.dev/"))
_ALIAS_SOURCES = {
    "CVE-": VulnerabilitySource(name="NVD", url=XsUri("https://nvd.nist.gov/")),
    "GHSA-": VulnerabilitySource(name="GitHub", url=XsUri("https://github.com/advisories")),
}


def build_vex(findings: Iterable[Finding]) -> Bom:
    """A BOM of the affected components and one vulnerability per finding."""
    items = list(findings)
    components: dict[str, Component] = {}
    for finding in items:
        purl = _purl(finding)
        components.setdefault(
            str(purl),
            Component(name=purl.name, version=purl.version, purl=purl, bom_ref=str(purl)),
        )
    tool = Component(type=ComponentType.APPLICATION, name=TOOL, version=__version__)
    return Bom(
        metadata=BomMetaData(tools=ToolRepository(components=[tool])),
        components=components.values(),
        vulnerabilities=[_vulnerability(finding) for finding in items],
    )


def vex_json(findings: Iterable[Finding]) -> str:
    """The VEX document as CycloneDX 1.6 JSON."""
    return JsonV1Dot6(build_vex(findings)).output_as_string(indent=2)


def _purl(finding: Finding) -> PackageURL:
    props = finding.properties
    return PackageURL(
        type="pypi", name=str(props["package"]), version=str(props["installed_version"])
    )


def _vulnerability(finding: Finding) -> Vulnerability:
    props = finding.properties
    purl = str(_purl(finding))
    fixed_in = props.get("fixed_in")
    return Vulnerability(
        bom_ref=f"{finding.rule_id}/{purl}",
        id=finding.rule_id,
        source=VulnerabilitySource(name="OSV", url=XsUri(ADVISORY_URL.format(id=finding.rule_id))),
        references=[_reference(alias) for alias in props.get("aliases", [])],
        ratings=[_rating(finding)],
        description=str(props.get("summary") or finding.message),
        recommendation=f"Upgrade {props['package']} to {fixed_in}" if fixed_in else None,
        analysis=_analysis(finding),
        affects=[
            BomTarget(
                ref=purl,
                versions=[
                    BomTargetVersionRange(
                        version=str(props["installed_version"]),
                        status=ImpactAnalysisAffectedStatus.AFFECTED,
                    )
                ],
            )
        ],
    )


def _reference(alias: str) -> VulnerabilityReference:
    source = next((src for prefix, src in _ALIAS_SOURCES.items() if alias.startswith(prefix)), _OSV)
    return VulnerabilityReference(id=alias, source=source)


def _rating(finding: Finding) -> VulnerabilityRating:
    score = finding.properties.get("cvss_score")
    vector = finding.properties.get("cvss_vector")
    return VulnerabilityRating(
        source=_OSV,
        score=Decimal(str(score)) if score is not None else None,
        severity=VulnerabilitySeverity(severity_level(finding).value),
        method=_method(vector) if vector else None,
        vector=vector or None,
    )


def _method(vector: str) -> VulnerabilityScoreSource:
    if vector.startswith("CVSS:4"):
        return VulnerabilityScoreSource.CVSS_V4
    if vector.startswith("CVSS:3.1"):
        return VulnerabilityScoreSource.CVSS_V3_1
    return VulnerabilityScoreSource.CVSS_V3


def _analysis(finding: Finding) -> VulnerabilityAnalysis:
    waiver = finding.waiver
    if finding.disposition is Disposition.WAIVED and waiver is not None:
        return VulnerabilityAnalysis(
            state=ImpactAnalysisState.NOT_AFFECTED,
            detail=f"{waiver.reason} (exception by {waiver.owner} until {waiver.expires}, "
            f"{waiver.source})",
        )
    if finding.disposition is Disposition.EXPIRED_WAIVER and waiver is not None:
        return VulnerabilityAnalysis(
            state=ImpactAnalysisState.EXPLOITABLE,
            detail=f"the exception expired on {waiver.expires}: {waiver.reason} "
            f"({waiver.owner}, {waiver.source})",
        )
    fixed = finding.properties.get("fixed_in")
    return VulnerabilityAnalysis(
        state=ImpactAnalysisState.IN_TRIAGE,
        responses=[ImpactAnalysisResponse.UPDATE] if fixed else None,
    )
