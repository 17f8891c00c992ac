"""SLOs as OpenSLO v1 `SLO` documents (https://github.com/OpenSLO/OpenSLO), both ways.

Export writes one document per SLO: a rolling `timeWindow`, `budgetingMethod:
Occurrences`, one objective (`target`, a fraction), and an inline indicator whose
`ratioMetric` counts good and total requests with Prometheus queries over the series
`conveyor env metrics` exposes (observe/rules.py). What OpenSLO has no field for (the
environment, the SLO's kind and time scale) travels in `conveyor.dev/` annotations.

Import reads such documents back into the shape of `environments.<name>.slos`: the
annotations first, else the queries (the `environment` label, the latency bucket's
`le`). Documents of other kinds (Service, DataSource...) are skipped; an SLO Conveyor
cannot evaluate (time slices, a calendar window, several objectives, an indicator by
reference or over other metrics) is an error at its file:line and key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from conveyor.deploy.exposition import PREFIX
from conveyor.errors import SpecError, SpecErrors
from conveyor.observe.rules import good_and_total
from conveyor.spec.locate import KeyPath, LocatedDocument, Locator, format_key_path, parse_yaml
from conveyor.spec.slo import Slo, SloKind

API_VERSION = "openslo/v1"
ANNOTATION = "conveyor.dev/"
_SHORTHAND = re.compile(r"^(\d+)([mhdwMQY])$")
_SHORTHAND_SECONDS = {
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "M": 30 * 86400,  # as OpenSLO's own Go library counts them
    "Q": 90 * 86400,
    "Y": 365 * 86400,
}
_DOCUMENT_START = re.compile(r"^---(\s.*)?$")
_LABEL = r'{name}\s*=\s*"([^"]*)"'


@dataclass(frozen=True)
class ImportedSlo:
    environment: str
    slo: Slo


# --- export ---------------------------------------------------------------------------


def export_documents(slos_by_environment: Mapping[str, Sequence[Slo]], service: str) -> str:
    """Every SLO as an OpenSLO v1 document, separated by `---`."""
    documents = [
        slo_document(environment, slo, service)
        for environment, slos in slos_by_environment.items()
        for slo in slos
    ]
    return yaml.safe_dump_all(documents, sort_keys=False, width=1000, explicit_start=True)


def slo_document(environment: str, slo: Slo, service: str) -> dict[str, Any]:
    good, total = good_and_total(environment, slo)
    annotations = {
        f"{ANNOTATION}environment": environment,
        f"{ANNOTATION}slo": slo.name,
        f"{ANNOTATION}kind": slo.kind.value,
    }
    if slo.time_scale != 1:
        annotations[f"{ANNOTATION}time-scale"] = f"{slo.time_scale:g}"
    spec: dict[str, Any] = {}
    if slo.description:
        spec["description"] = slo.description
    spec |= {
        "service": service,
        "indicator": {
            "metadata": {"name": f"{environment}-{slo.name}-sli"},
            "spec": {
                "ratioMetric": {
                    "counter": True,
                    "good": _source(f"sum({good})"),
                    "total": _source(f"sum({total})"),
                }
            },
        },
        "timeWindow": [{"duration": shorthand(slo.window), "isRolling": True}],
        "budgetingMethod": "Occurrences",
        "objectives": [
            {"displayName": f"{slo.objective:g}% {_good_noun(slo)}", "target": _target(slo)}
        ],
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "SLO",
        "metadata": {
            "name": f"{environment}-{slo.name}",
            "displayName": f"{environment} {slo.name}",
            "annotations": annotations,
        },
        "spec": spec,
    }


def _source(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def _target(slo: Slo) -> float:
    return round(slo.objective / 100.0, 10)


def _good_noun(slo: Slo) -> str:
    if slo.kind is SloKind.AVAILABILITY:
        return "of requests answered without a 5xx"
    assert slo.threshold is not None
    return f"of requests answered within {slo.threshold:g}s"


def shorthand(seconds: float) -> str:
    """An OpenSLO duration shorthand: whole days, else hours, else minutes."""
    for unit in ("d", "h", "m"):
        size = _SHORTHAND_SECONDS[unit]
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{max(round(seconds / 60), 1)}m"


# --- import ---------------------------------------------------------------------------


def import_documents(text: str, file: str, environment: str | None = None) -> list[ImportedSlo]:
    """The SLO documents of an OpenSLO file (one or more YAML documents); `environment`
    names the environment of those that do not say it."""
    found: list[ImportedSlo] = []
    problems: list[SpecError] = []
    for part in _documents(text):
        document = _parse(part, file)
        reader = _Reader(document.data, document.locator, file)
        if reader.data.get("kind") != "SLO":
            continue
        try:
            found.append(reader.slo(environment))
        except SpecError as error:
            problems.append(error)
    if problems:
        raise problems[0] if len(problems) == 1 else SpecErrors(problems)
    if not found:
        raise SpecError(
            "no OpenSLO `kind: SLO` document in the file",
            file=file,
            hint="`conveyor slo export --openslo` writes one per SLO",
        )
    return found


def _parse(part: str, file: str) -> LocatedDocument:
    try:
        return parse_yaml(part, file)
    except SpecError as error:
        if not error.detail.startswith("the top level must be a mapping"):
            raise
        raise SpecError(
            "an OpenSLO document is a mapping (apiVersion, kind, metadata, spec)",
            file=file,
            line=error.line,
            column=error.column,
            hint="separate documents with `---` lines rather than listing them",
        ) from None


def _documents(text: str) -> Iterable[str]:
    """Each YAML document of `text`, preceded by blank lines so line numbers stay true."""
    lines = text.splitlines()
    start = 0
    for index, line in enumerate([*lines, "---"]):
        if _DOCUMENT_START.match(line) or index == len(lines):
            part = "\n" * start + "\n".join(lines[start:index])
            if part.strip():
                yield part
            start = index + 1


class _Reader:
    """One OpenSLO document, read into an SLO, each problem located in the file."""

    def __init__(self, data: dict[str, Any], locator: Locator, file: str) -> None:
        self.data, self.locator, self.file = data, locator, file

    def error(self, path: KeyPath, message: str, hint: str | None = None) -> SpecError:
        line, column = self.locator.locate(path) or (1, 1)
        return SpecError(
            message,
            file=self.file,
            line=line,
            column=column,
            key_path=format_key_path(path) or None,
            hint=hint,
        )

    def get(self, path: KeyPath, kind: Any, what: str) -> Any:
        value: Any = self.data
        for part in path:
            if isinstance(part, int):
                value = value[part] if isinstance(value, list) and part < len(value) else None
            else:
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                raise self.error(path, f"missing {what}")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(path, f"expected {what}, got {value!r}")
        return value

    def slo(self, environment: str | None) -> ImportedSlo:
        version = self.data.get("apiVersion")
        if version != API_VERSION:
            raise self.error(
                ("apiVersion",), f"unsupported apiVersion {version!r}: this reads {API_VERSION}"
            )
        name = self.get(("metadata", "name"), str, "a name")
        annotations = self.data.get("metadata", {}).get("annotations") or {}
        annotations = annotations if isinstance(annotations, dict) else {}
        self._check_budgeting()
        good, total = self._queries()
        where = environment or annotations.get(f"{ANNOTATION}environment")
        where = where or _label(good, "environment") or _label(total, "environment")
        if not where:
            raise self.error(
                ("metadata", "name"),
                "no environment: neither a conveyor.dev/environment annotation nor an "
                "environment label in the queries",
                hint="name it: `conveyor slo import FILE --env production`",
            )
        values = {
            "name": annotations.get(f"{ANNOTATION}slo") or _slo_name(name, where),
            "objective": self._objective(),
            "window": self._window(),
            **self._kind(good, annotations),
        }
        if f"{ANNOTATION}time-scale" in annotations:
            values["time_scale"] = annotations[f"{ANNOTATION}time-scale"]
        description = self.data.get("spec", {}).get("description")
        if isinstance(description, str):
            values["description"] = description
        try:
            return ImportedSlo(str(where), Slo.model_validate(values))
        except ValidationError as error:
            detail = error.errors()[0]
            message = detail["msg"].removeprefix("Value error, ")
            if detail["loc"]:  # a field of the SLO, else the SLO as a whole
                message = ".".join(str(part) for part in detail["loc"]) + ": " + message
            raise self.error(("metadata", "name"), message) from None

    def _check_budgeting(self) -> None:
        method = self.get(("spec", "budgetingMethod"), str, "a budgetingMethod")
        if method != "Occurrences":
            raise self.error(
                ("spec", "budgetingMethod"),
                f"budgetingMethod {method} is not supported: Conveyor counts Occurrences "
                "(good requests out of all)",
            )
        if "indicatorRef" in self.data.get("spec", {}):
            raise self.error(
                ("spec", "indicatorRef"),
                "an indicator by reference is not supported",
                hint="inline it under `indicator:`",
            )

    def _queries(self) -> tuple[str, str]:
        base = ("spec", "indicator", "spec", "ratioMetric")
        self.get(base, dict, "a ratioMetric (good and total queries)")
        good = self.get((*base, "good", "metricSource", "spec", "query"), str, "a query")
        total = self.get((*base, "total", "metricSource", "spec", "query"), str, "a query")
        return good, total

    def _objective(self) -> float:
        objectives = self.get(("spec", "objectives"), list, "a list of objectives")
        if len(objectives) != 1:
            raise self.error(
                ("spec", "objectives"),
                f"{len(objectives)} objectives: Conveyor reads one per SLO",
                hint="write one SLO per objective",
            )
        objective = self.get(("spec", "objectives", 0), dict, "an objective")
        if "target" in objective:
            target = self.get(("spec", "objectives", 0, "target"), float | int, "a number")
            if not 0 < target < 1:
                raise self.error(
                    ("spec", "objectives", 0, "target"), f"target {target} is not within (0, 1)"
                )
            return round(float(target) * 100, 8)
        path = ("spec", "objectives", 0, "targetPercent")
        return float(self.get(path, float | int, "a target or targetPercent"))

    def _window(self) -> float:
        windows = self.get(("spec", "timeWindow"), list, "a timeWindow list")
        window = self.get(("spec", "timeWindow", 0), dict, "a time window")
        path = ("spec", "timeWindow", 0)
        if len(windows) != 1:
            raise self.error(("spec", "timeWindow"), "timeWindow must hold exactly one window")
        if window.get("calendar") is not None or window.get("isRolling") is not True:
            raise self.error(
                path, "only rolling windows are supported (isRolling: true, no calendar)"
            )
        duration = self.get((*path, "duration"), str, "a duration such as 28d")
        match = _SHORTHAND.match(duration)
        if match is None:
            raise self.error(
                (*path, "duration"), f"invalid duration {duration!r}: use e.g. 28d, 4w, 1M"
            )
        return int(match.group(1)) * _SHORTHAND_SECONDS[match.group(2)] * 1.0

    def _kind(self, good: str, annotations: Mapping[str, Any]) -> dict[str, Any]:
        written = annotations.get(f"{ANNOTATION}kind")
        path = ("spec", "indicator", "spec", "ratioMetric", "good", "metricSource", "spec")
        if f"{PREFIX}_request_duration_seconds_bucket" in good:
            le = _label(good, "le")
            if le is None:
                raise self.error((*path, "query"), "a latency query needs its bucket's `le`")
            return {"kind": written or SloKind.LATENCY.value, "threshold": float(le)}
        if f"{PREFIX}_responses_total" in good or f"{PREFIX}_requests_total" in good:
            return {"kind": written or SloKind.AVAILABILITY.value}
        raise self.error(
            (*path, "query"),
            "not a query over Conveyor's series (conveyor_release_responses_total or "
            "conveyor_release_request_duration_seconds_bucket)",
            hint="Conveyor evaluates SLOs over its routers' counters only",
        )


def _label(query: str, name: str) -> str | None:
    match = re.search(_LABEL.format(name=re.escape(name)), query)
    return match.group(1) if match else None


def _slo_name(name: str, environment: str) -> str:
    return name.removeprefix(f"{environment}-") or name


# --- back to conveyor.yml ---------------------------------------------------------------


def spec_shape(imported: Sequence[ImportedSlo]) -> dict[str, Any]:
    """`environments: {name: {slos: [...]}}` as written in conveyor.yml."""
    environments: dict[str, Any] = {}
    for item in imported:
        slo = item.slo
        entry: dict[str, Any] = {"name": slo.name, "kind": slo.kind.value}
        if slo.threshold is not None:
            entry["threshold"] = f"{round(slo.threshold * 1000)}ms"
        entry |= {"objective": _plain(slo.objective), "window": shorthand(slo.window)}
        if slo.time_scale != 1:
            entry["time_scale"] = _plain(slo.time_scale)
        if slo.description:
            entry["description"] = slo.description
        environments.setdefault(item.environment, {"slos": []})["slos"].append(entry)
    return {"environments": environments}


def _plain(value: float) -> float | int:
    """99 rather than 99.0, as a person writes it."""
    return int(value) if value.is_integer() else value
