from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest

from conveyor.errors import ConveyorError, SpecError
from conveyor.spec.loader import load_pipeline, parse_pipeline
from conveyor.states import FailureClass
from conveyor.steps.archive import ArchiveParams
from conveyor.steps.registry import STEP_PARAMS, step_names


@dataclass(frozen=True)
class Golden:
    id: str
    text: str
    where: str  # "line:column key.path" (no key path for a YAML syntax error)
    fragment: str  # part of the message
    hint: str | None = None  # the exact hint


GOLDEN = [
    Golden(
        "malformed-yaml",
        """
        version: 1
        jobs:
          build:
            run: make: all
        """,
        "4:14",
        "invalid YAML: mapping values are not allowed",
    ),
    Golden(
        "unknown-top-level-key",
        """
        version: 1
        jbos:
          build: {run: make}
        """,
        "2:1 jbos",
        "unknown key 'jbos'",
        "did you mean 'jobs'?",
    ),
    Golden(
        "unknown-job-key",
        """
        version: 1
        jobs:
          build:
            runn: make
        """,
        "4:5 jobs.build.runn",
        "unknown key 'runn'",
        "did you mean 'run'?",
    ),
    Golden(
        "unknown-key-in-retry",
        """
        version: 1
        jobs:
          build:
            run: make
            retry:
              max: 2
              onn: [timeout]
        """,
        "7:7 jobs.build.retry.onn",
        "unknown key 'onn'",
        "did you mean 'on'?",
    ),
    Golden(
        "unknown-key-in-concurrency",
        """
        version: 1
        jobs:
          deploy:
            run: ./deploy.sh
            concurrency: {group: prod, supersed: true}
        """,
        "5:32 jobs.deploy.concurrency.supersed",
        "unknown key 'supersed'",
        "did you mean 'supersede'?",
    ),
    Golden(
        "unknown-key-without-close-match",
        """
        version: 1
        jobs:
          build:
            run: make
            retry: {max: 1, zzz: 1}
        """,
        "5:21 jobs.build.retry.zzz",
        "unknown key 'zzz'",
        "valid keys: exit_codes, max, on",
    ),
    Golden(
        "wrong-type-in-list",
        """
        version: 1
        jobs:
          lint: {run: ruff check .}
          build:
            run: make
            needs: [lint, {job: x}]
        """,
        "6:19 jobs.build.needs[1]",
        "expected a string, got a mapping",
    ),
    Golden(
        "wrong-type-scalar",
        """
        version: 1
        jobs:
          build:
            run: make
            cache: maybe
        """,
        "5:12 jobs.build.cache",
        "expected true or false, got the string 'maybe'",
    ),
    Golden(
        "duplicate-job-name",
        """
        version: 1
        jobs:
          build: {run: make}
          test: {run: make test}
          build: {run: make again}
        """,
        "5:3 jobs.build",
        "duplicate job name 'build' (first defined at line 3)",
    ),
    Golden(
        "cycle",
        """
        version: 1
        jobs:
          a:
            run: x
            needs: [b]
          b:
            run: x
            needs: [c]
          c:
            run: x
            needs: [lint, a]
          lint: {run: x}
        """,
        "11:19 jobs.c.needs[1]",
        "cycle: a -> b -> c -> a",
        "each arrow is a `needs` entry; remove one of them",
    ),
    Golden(
        "unknown-needs-target",
        """
        version: 1
        jobs:
          build: {run: make}
          test:
            run: make test
            needs: [bulid]
        """,
        "6:13 jobs.test.needs[0]",
        "unknown job 'bulid' in needs",
        "did you mean 'build'?",
    ),
    Golden(
        "unknown-needs-target-without-close-match",
        """
        version: 1
        jobs:
          build: {run: make}
          test:
            run: make test
            needs: xyz
        """,
        "6:12 jobs.test.needs[0]",
        "unknown job 'xyz' in needs",
        "jobs: build, test",
    ),
    Golden(
        "self-need",
        """
        version: 1
        jobs:
          build:
            run: make
            needs: [build]
        """,
        "5:13 jobs.build.needs[0]",
        "job 'build' needs itself",
        "remove it from its own needs",
    ),
    Golden(
        "invalid-glob",
        """
        version: 1
        jobs:
          build:
            run: make
            outputs:
              - dist/*
              - "src/{a,b"
        """,
        "7:9 jobs.build.outputs[1]",
        "glob 'src/{a,b' has a '{' without its '}'",
    ),
    Golden(
        "invalid-duration",
        """
        version: 1
        defaults:
          timeout: 10 minutes
        jobs:
          build: {run: make}
        """,
        "3:12 defaults.timeout",
        "invalid duration '10 minutes'",
    ),
    Golden(
        "unknown-step",
        """
        version: 1
        jobs:
          build:
            uses: archiv
        """,
        "4:11 jobs.build.uses",
        "unknown step 'archiv'",
        "did you mean 'archive'?",
    ),
    Golden(
        "bad-with-param",
        """
        version: 1
        jobs:
          build:
            uses: archive
            with:
              output: dist/app.tar.gz
              pathz: [src]
        """,
        "7:7 jobs.build.with.pathz",
        "unknown key 'pathz'",
        "did you mean 'paths'?",
    ),
    Golden(
        "bad-with-value",
        """
        version: 1
        jobs:
          build:
            uses: archive
            with: {output: /tmp/app.tar.gz}
        """,
        "5:20 jobs.build.with.output",
        "output must be a path inside the workspace",
    ),
    Golden(
        "missing-with-points-at-uses",
        """
        version: 1
        jobs:
          build:
            uses: archive
        """,
        "4:11 jobs.build.with.output",
        "missing required key 'output'",
    ),
    Golden(
        "version-2",
        """
        name: demo
        jobs:
          build: {runn: make}
        version: 2
        """,
        "4:10 version",
        "unsupported spec version 2",
        "write `version: 1`",
    ),
    Golden(
        "missing-version",
        """
        jobs:
          build: {run: make}
        """,
        "1:1 version",
        "missing required key 'version'",
        "start the file with `version: 1`",
    ),
    Golden(
        "run-and-uses",
        """
        version: 1
        jobs:
          lint: {run: ruff check .}
          build:
            run: make
            uses: archive
        """,
        "4:3 jobs.build",
        "a job needs exactly one of `run` (shell commands) or `uses`",
    ),
    Golden(
        "empty-jobs",
        """
        version: 1
        jobs: {}
        """,
        "2:1 jobs",
        "no jobs defined",
        "add a job, e.g. `jobs: {test: {run: pytest}}`",
    ),
    Golden(
        "jobs-without-value",
        """
        version: 1
        jobs:
        """,
        "2:1 jobs",
        "no jobs defined",
        "add a job, e.g. `jobs: {test: {run: pytest}}`",
    ),
    Golden(
        "invalid-job-name",
        """
        version: 1
        jobs:
          my build: {run: make}
        """,
        '3:3 jobs["my build"]',
        "invalid job name 'my build'",
    ),
    Golden(
        "retry-out-of-range",
        """
        version: 1
        jobs:
          build: {run: make, retry: 11}
        """,
        "3:29 jobs.build.retry",
        "must be less than or equal to 10, got the number 11",
    ),
    Golden(
        "union-members-merge-into-one-message",
        """
        version: 1
        jobs:
          test:
            run: pytest
            matrix:
              python: ["3.11", "3.12"]
              exclude: [{python: [3.11]}]
        """,
        "7:26 jobs.test.matrix.exclude[0].python",
        "expected a string, a whole number, a number or true or false, got a list",
    ),
    Golden(
        # pydantic reports `run` first (model field order); the file has `cache` first.
        "first-error-in-the-file-wins",
        """
        version: 1
        jobs:
          a:
            cache: maybe
            run: [x, [y]]
        """,
        "4:12 jobs.a.cache",
        "expected true or false",
    ),
    Golden(
        "first-graph-error-in-the-file-wins",
        """
        version: 1
        jobs:
          a: {uses: nope}
          b: {run: x, needs: [zzz]}
        """,
        "3:13 jobs.a.uses",
        "unknown step 'nope'",
        "steps: " + ", ".join(step_names()),
    ),
]


@pytest.mark.parametrize("case", GOLDEN, ids=[case.id for case in GOLDEN])
def test_golden_errors(case: Golden) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pipeline(dedent(case.text).lstrip("\n"), "conveyor.yml", steps=STEP_PARAMS)
    error = caught.value.problems[0]  # every problem is reported; the first in the file
    position, _, key_path = case.where.partition(" ")
    assert error.file == "conveyor.yml"
    assert f"{error.line}:{error.column}" == position
    assert error.key_path == (key_path or None)
    assert case.fragment in error.detail
    assert error.hint == case.hint
    assert str(error).startswith(f"conveyor.yml:{position}:")


FULL = """\
version: 1
name: shop
env:
  CI: true
  LEVEL: 3
defaults:
  timeout: 20m
  retry: 2
jobs:
  lint:
    run: ruff check .
    inputs: ["**/*.py", pyproject.toml]
    tools: python3
  test:
    needs: lint
    matrix:
      python: ["3.11", "3.12"]
      exclude: [{python: "3.11"}]
    run:
      - pytest -q
    env: {PYTHONHASHSEED: 0}
    timeout: 1h30m
    retry: {max: 3, on: [timeout], exit_codes: [137]}
    if: {branch: [main, "release/*"]}
  build:
    needs: [test]
    uses: archive
    with:
      paths: ["src/**"]
      output: dist/app.tar.gz
    outputs: [dist/app.tar.gz]
    cache: false
  deploy:
    needs: [build]
    run: ./deploy.sh
    secrets: [DEPLOY_TOKEN]
    rules:
      - tag: ["v*"]
      - changes: [deploy/**]
        when: never
    concurrency: production
"""


def test_full_featured_file_loads_with_expected_values() -> None:
    loaded = parse_pipeline(FULL, "conveyor.yml", steps=STEP_PARAMS)
    pipeline = loaded.pipeline
    assert (pipeline.version, pipeline.name) == (1, "shop")
    assert pipeline.env == {"CI": "true", "LEVEL": "3"}
    assert pipeline.defaults.timeout == 1200.0
    assert pipeline.defaults.retry is not None and pipeline.defaults.retry.max == 2
    assert list(pipeline.jobs) == ["lint", "test", "build", "deploy"]
    lint, test, build, deploy = pipeline.jobs.values()
    assert lint.run == ["ruff check ."] and lint.tools == ["python3"]
    assert lint.inputs == ["**/*.py", "pyproject.toml"]
    assert test.needs == ["lint"] and test.timeout == 5400.0
    assert test.env == {"PYTHONHASHSEED": "0"}
    assert test.matrix is not None and test.matrix.axes() == {"python": ["3.11", "3.12"]}
    assert test.retry is not None and test.retry.on == [FailureClass.TIMEOUT]
    assert test.retry.exit_codes == [137]
    assert test.if_ is not None and test.if_.branch == ["main", "release/*"]
    assert build.uses == "archive" and build.cache is False and build.inputs == ["**"]
    assert deploy.rules is not None and deploy.rules[1].when == "never"
    assert deploy.concurrency is not None and deploy.concurrency.group == "production"
    assert loaded.step_params == {
        "build": ArchiveParams(paths=["src/**"], output="dist/app.tar.gz")
    }
    assert loaded.locator.locate(("jobs", "deploy", "rules", 1, "when")) == (40, 15)
    assert loaded.path == Path("conveyor.yml")


def _many_jobs(count: int) -> str:
    lines = ["version: 1", "env: {CI: 'true'}", "jobs:"]
    for index in range(count):
        lines += [f"  job{index}:", f"    run: [make part{index}]"]
        if index:
            lines.append(f"    needs: [job{index - 1}, job{index // 2}]")
        lines += [
            "    env:",
            f"      INDEX: {index}",
            "    inputs: ['src/**/*.py', pyproject.toml]",
            "    timeout: 10m",
        ]
    lines += ["  pack:", "    needs: [job499]", "    uses: archive", "    with: {output: a.tgz}"]
    return "\n".join(lines) + "\n"


def test_a_500_job_file_loads() -> None:
    loaded = parse_pipeline(_many_jobs(500), "conveyor.yml", steps=STEP_PARAMS)
    jobs = loaded.pipeline.jobs
    assert len(jobs) == 501
    assert jobs["job499"].needs == ["job498", "job249"]
    assert jobs["job499"].env == {"INDEX": "499"}
    assert list(loaded.step_params) == ["pack"]
    # 3 header lines, 6 lines for job0, 7 for each later job; `needs` is a job's 3rd line.
    needs_line = 3 + 6 + 498 * 7 + 3
    assert loaded.locator.locate(("jobs", "job499", "needs", 1)) == (needs_line, 21)


def test_load_pipeline_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    path.write_text(FULL, encoding="utf-8")
    loaded = load_pipeline(path, steps=STEP_PARAMS)
    assert loaded.path == path
    assert list(loaded.pipeline.jobs) == ["lint", "test", "build", "deploy"]


def test_missing_file_suggests_init(tmp_path: Path) -> None:
    with pytest.raises(ConveyorError) as caught:
        load_pipeline(tmp_path / "conveyor.yml", steps=STEP_PARAMS)
    assert caught.value.message == f"no conveyor.yml at {tmp_path / 'conveyor.yml'}"
    assert caught.value.hint == "run `conveyor init` to write a starter file"


def test_errors_name_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    path.write_text("version: 1\njobs:\n  a: {runn: x}\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_pipeline(path, steps=STEP_PARAMS)
    assert caught.value.location == f"{path}:3:7"


def test_non_utf8_file_is_a_spec_error(tmp_path: Path) -> None:
    path = tmp_path / "conveyor.yml"
    path.write_bytes(b"version: 1\njobs: {a: {run: \xff}}\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_pipeline(path, steps=STEP_PARAMS)
