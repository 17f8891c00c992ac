"""OpenSLO v1: what export writes reads back as the same SLOs; what Conveyor cannot
evaluate is an error at its line."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from conftest import MakeProject, run_cli
from conveyor.errors import SpecError
from conveyor.observe.openslo import export_documents, import_documents, spec_shape
from conveyor.spec.slo import Slo, SloKind

SLOS = {
    "production": [
        Slo(kind=SloKind.AVAILABILITY, objective=99.5, description="checkout answers"),
        Slo(name="fast", kind=SloKind.LATENCY, threshold=0.25, objective=99.0, window=30 * 86400),
    ],
    "staging": [Slo(kind=SloKind.AVAILABILITY, objective=99.0, time_scale=3600)],
}
FOREIGN = """\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: web-availability
spec:
  service: web
  indicator:
    metadata: {name: web-ratio}
    spec:
      ratioMetric:
        counter: true
        good:
          metricSource:
            type: Prometheus
            spec:
              query: sum(conveyor_release_responses_total{environment="prod",code!="5xx"})
        total:
          metricSource:
            type: Prometheus
            spec:
              query: sum(conveyor_release_requests_total{environment="prod"})
  timeWindow:
    - duration: 4w
      isRolling: true
  budgetingMethod: Occurrences
  objectives:
    - displayName: Good
      targetPercent: 99.9
"""


def test_export_writes_openslo_v1_slo_documents() -> None:
    documents = list(yaml.safe_load_all(export_documents(SLOS, "shop")))
    assert len(documents) == 3
    first = documents[0]
    assert (first["apiVersion"], first["kind"]) == ("openslo/v1", "SLO")
    assert first["metadata"]["name"] == "production-availability"
    spec = first["spec"]
    assert spec["service"] == "shop" and spec["budgetingMethod"] == "Occurrences"
    assert spec["timeWindow"] == [{"duration": "28d", "isRolling": True}]
    assert spec["objectives"][0]["target"] == 0.995
    ratio = spec["indicator"]["spec"]["ratioMetric"]
    assert ratio["counter"] is True
    assert ratio["good"]["metricSource"] == {
        "type": "Prometheus",
        "spec": {
            "query": 'sum(conveyor_release_responses_total{environment="production",code!="5xx"})'
        },
    }
    assert ratio["total"]["metricSource"]["spec"]["query"] == (
        'sum(conveyor_release_requests_total{environment="production"})'
    )
    latency = documents[1]["spec"]["indicator"]["spec"]["ratioMetric"]
    assert 'le="0.25"' in latency["good"]["metricSource"]["spec"]["query"]


def test_export_then_import_gives_the_same_slos() -> None:
    imported = import_documents(export_documents(SLOS, "shop"), "slos.yaml")
    assert [(item.environment, item.slo) for item in imported] == [
        (environment, slo) for environment, slos in SLOS.items() for slo in slos
    ]


def test_a_foreign_document_reads_its_environment_from_the_queries() -> None:
    [imported] = import_documents(FOREIGN, "web.yaml")
    assert imported.environment == "prod"
    slo = imported.slo
    assert (slo.name, slo.kind, slo.objective, slo.window) == (
        "web-availability",
        SloKind.AVAILABILITY,
        99.9,
        28 * 86400,
    )
    assert spec_shape([imported]) == {
        "environments": {
            "prod": {
                "slos": [
                    {
                        "name": "web-availability",
                        "kind": "availability",
                        "objective": 99.9,
                        "window": "28d",
                    }
                ]
            }
        }
    }


def test_other_kinds_of_documents_are_skipped() -> None:
    service = "apiVersion: openslo/v1\nkind: Service\nmetadata: {name: web}\nspec: {}\n"
    imported = import_documents(service + "---\n" + FOREIGN, "web.yaml")
    assert [item.slo.name for item in imported] == ["web-availability"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("budgetingMethod: Occurrences", "budgetingMethod: Timeslices"),
            "web.yaml:25:20: spec.budgetingMethod: budgetingMethod Timeslices is not supported",
        ),
        (
            ("isRolling: true", "isRolling: false"),
            "web.yaml:23:7: spec.timeWindow[0]: only rolling windows are supported",
        ),
        (
            ("duration: 4w", "duration: 4 weeks"),
            "web.yaml:23:17: spec.timeWindow[0].duration: invalid duration '4 weeks'",
        ),
        (
            ("targetPercent: 99.9", "target: 99.9"),
            "web.yaml:28:15: spec.objectives[0].target: target 99.9 is not within (0, 1)",
        ),
        (
            ("apiVersion: openslo/v1", "apiVersion: openslo/v2alpha"),
            "web.yaml:1:13: apiVersion: unsupported apiVersion 'openslo/v2alpha'",
        ),
        (
            ("conveyor_release_responses_total", "http_requests_total"),
            "web.yaml:16:22: spec.indicator.spec.ratioMetric.good.metricSource.spec.query: not a "
            "query over Conveyor's series",
        ),
        (
            ("duration: 4w", "duration: 1d"),
            "web.yaml:4:9: metadata.name: the rolling window must be at least 3d",
        ),
    ],
)
def test_what_conveyor_cannot_evaluate_is_an_error_at_its_line(
    change: tuple[str, str], expected: str
) -> None:
    with pytest.raises(SpecError) as caught:
        import_documents(FOREIGN.replace(*change), "web.yaml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_an_environment_must_come_from_somewhere() -> None:
    text = FOREIGN.replace('environment="prod",', "").replace('{environment="prod"}', "")
    with pytest.raises(SpecError, match="no environment") as caught:
        import_documents(text, "web.yaml")
    assert "--env production" in (caught.value.hint or "")
    [imported] = import_documents(text, "web.yaml", environment="production")
    assert imported.environment == "production"


def test_a_file_without_slos_is_an_error() -> None:
    with pytest.raises(SpecError, match="no OpenSLO `kind: SLO` document"):
        import_documents("apiVersion: openslo/v1\nkind: Service\nmetadata: {name: a}\n", "x")


def test_the_cli_exports_and_imports(git_project: MakeProject, tmp_path: Path) -> None:
    spec = dedent(
        """\
        version: 1
        jobs:
          build: {run: make}
        environments:
          production:
            slos:
              - {kind: availability, objective: 99.5}
              - {name: fast, kind: latency, threshold: 250ms, objective: 99, time_scale: 60}
        """
    )
    project = git_project(spec)
    exported = run_cli(["slo", "export", "--openslo"], project.root)
    assert exported.exit_code == 0, exported.stderr
    (tmp_path / "slos.yaml").write_text(exported.stdout)

    imported = run_cli(["slo", "import", str(tmp_path / "slos.yaml")], project.root)

    assert imported.exit_code == 0, imported.stderr
    assert yaml.safe_load(imported.stdout) == {
        "environments": {
            "production": {
                "slos": [
                    {
                        "name": "availability",
                        "kind": "availability",
                        "objective": 99.5,
                        "window": "28d",
                    },
                    {
                        "name": "fast",
                        "kind": "latency",
                        "threshold": "250ms",
                        "objective": 99,
                        "window": "28d",
                        "time_scale": 60,
                    },
                ]
            }
        }
    }
    (tmp_path / "bad.yaml").write_text(FOREIGN.replace("Occurrences", "Timeslices"))
    bad = run_cli(["slo", "import", str(tmp_path / "bad.yaml")], project.root)
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr
    assert "bad.yaml:25:20: spec.budgetingMethod" in bad.stderr
    missing = run_cli(["slo", "import", str(tmp_path / "none.yaml")], project.root)
    assert missing.exit_code != 0 and "cannot read" in missing.stderr


def test_a_list_of_documents_or_a_bomb_is_one_clear_error() -> None:
    listed = "- " + FOREIGN.replace("\n", "\n  ")
    with pytest.raises(SpecError, match="an OpenSLO document is a mapping") as caught:
        import_documents(listed, "list.yaml")
    assert "---" in (caught.value.hint or "")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    with pytest.raises(SpecError):
        import_documents(bomb, "bomb.yaml")
