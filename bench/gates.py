"""Quality gates: the sample pipeline's gates cold, and merging/baselining 10,000 findings.

1. Cold: the gate jobs of examples/shop (lint, sast with bandit + semgrep, secrets, unit
   and integration tests with coverage) through `conveyor run --job ...`, with an empty
   state folder each time, side by side with the same tools run by hand one after another in
   a shell script (the floor a team gets without Conveyor, minus the reports).
2. In-process: 10,000 findings fingerprinted, written as SARIF, merged, read back as a
   baseline, classified, waived and gated.

    .venv/bin/python bench/gates.py --repeat 3
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from common import (
    CONVEYOR,
    Figure,
    Samples,
    alternate,
    clean_env,
    header,
    print_figures,
    print_samples,
    repeat_parser,
    time_command,
)
from conveyor.findings.baseline import classify
from conveyor.findings.exceptions import ExceptionEntry, Exceptions
from conveyor.findings.fingerprint import fingerprint
from conveyor.findings.gate import decide_findings
from conveyor.findings.model import Category, Finding, Level
from conveyor.findings.sarif import findings_from_log, merge_logs, write_log
from conveyor.service.demo import demo_env, find_sample, make_repository, prepare_supply_chain
from conveyor.service.project import Project
from conveyor.spec.gates import FindingsGate

COLD_GOAL = 15.0
GATE_JOBS = ("lint", "sast", "secrets", "unit-tests", "integration-tests")
MERGE_GOAL = 1.0

BY_HAND = """set -e
python -m ruff check --no-cache --output-format sarif -o /tmp/ruff.sarif --exit-zero app tests
bandit -q -r app -f sarif -o /tmp/bandit.sarif --exit-zero || true
semgrep scan --config {rules} --metrics=off --disable-version-check --quiet \\
  --sarif -o /tmp/semgrep.sarif app
detect-secrets scan $(git ls-files) > /tmp/secrets.json
python -m pytest -q -p no:cacheprovider tests/unit --cov=app --cov-report=json:/tmp/cov.json \\
  --junitxml=/tmp/u.xml
python -m pytest -q -p no:cacheprovider tests/integration --junitxml=/tmp/i.xml
"""


def cold_run(parent: Path, index: int) -> float:
    repository = make_repository(find_sample(), parent / f"shop-{index}")
    prepare_supply_chain(Project.locate(repository / "conveyor.yml"), find_sample())
    env = clean_env(**demo_env())
    gates = [arg for job in GATE_JOBS for arg in ("--job", job)]
    return time_command([CONVEYOR, "run", "-q", *gates], cwd=repository, env=env)


def by_hand(parent: Path, index: int) -> float:
    from conveyor.steps.sast import shipped_rules

    repository = make_repository(find_sample(), parent / f"hand-{index}")
    with shipped_rules() as rules:
        script = BY_HAND.format(rules=rules)
        return time_command(["bash", "-c", script], cwd=repository, env=clean_env(**demo_env()))


def synthetic_findings(count: int, seed: int = 7) -> list[Finding]:
    rng = random.Random(seed)
    rules = [f"R{n:03d}" for n in range(60)]
    findings = []
    for n in range(count):
        path = f"src/module_{n % 400}.py"
        rule = rng.choice(rules)
        text = f"value_{n} = call({n})"
        findings.append(
            Finding(
                tool=rng.choice(["ruff", "bandit", "semgrep"]),
                rule_id=rule,
                level=rng.choice(list(Level)),
                message=f"finding {n}",
                category=Category.SAST,
                path=path,
                start_line=n % 900 + 1,
                fingerprint=fingerprint(rule, path, text, 0),
            )
        )
    return findings


def merge_and_baseline(findings: list[Finding]) -> float:
    started = time.perf_counter()
    tools = {"ruff": "x", "bandit": "x", "semgrep": "x"}
    previous = merge_logs([write_log(findings[: len(findings) // 2 * 2 - 500], tools=tools)])
    baseline = {f.fingerprint for f in findings_from_log(previous)}
    current = merge_logs([write_log(findings, tools=tools)])
    classified = classify(findings_from_log(current), baseline)
    waivers = Exceptions(
        entries=tuple(
            (
                ExceptionEntry(
                    rule=f"R{n:03d}", reason="bench", owner="b", expires=date(2099, 1, 1)
                ),
                f"x:{n}",
            )
            for n in range(10)
        )
    )
    decided = decide_findings("bench", waivers.apply(classified, date.today()), FindingsGate())
    assert decided.counts["unchanged"] > 0
    return time.perf_counter() - started


def measure(repeat: int) -> list[Figure]:
    header("gates: the sample pipeline cold, and 10,000 findings")
    with tempfile.TemporaryDirectory(prefix="bench-gates-") as scratch:
        parent = Path(scratch)
        rounds = iter(range(10_000))
        samples = alternate(
            {
                "conveyor run (all gates, parallel, cold)": lambda: cold_run(parent, next(rounds)),
                "the same tools by hand, one after another": lambda: by_hand(parent, next(rounds)),
            },
            repeat,
        )
    conveyor = samples["conveyor run (all gates, parallel, cold)"]
    hand = samples["the same tools by hand, one after another"]
    print_samples("examples/shop, cold (empty state each time)", [conveyor, hand], hand)
    findings = synthetic_findings(10_000)
    merge = Samples(
        "merge + baseline + waive + gate, 10,000 findings",
        [merge_and_baseline(findings) for _ in range(max(3, repeat))],
    )
    print_samples("in-process", [merge], None)
    figures = [
        Figure("cold pipeline, all gates", conveyor.median, "s", COLD_GOAL),
        Figure("conveyor / by hand", conveyor.median / hand.median, "x"),
        Figure(
            "10,000 findings merged and baselined",
            statistics.median(merge.seconds),
            "s",
            MERGE_GOAL,
        ),
    ]
    print_figures("gates", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = repeat_parser(__doc__ or "").parse_args(argv)
    measure(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
