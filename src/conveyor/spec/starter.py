"""The commented `conveyor.yml` that `conveyor init` writes for a Python project."""

from __future__ import annotations

STARTER_YAML = """\
# conveyor.yml: this repository's pipeline, as code. `conveyor lint` checks it,
# `conveyor plan` shows what would run and why, `conveyor run` runs it.
# A job whose inputs did not change is restored from the cache, not run again.
# Editors: `conveyor schema` prints the JSON Schema (for yaml-language-server).
version: 1
name: my-project

env:
  PYTHONDONTWRITEBYTECODE: "1"

defaults:
  timeout: 15m                      # per job: 30s, 10m, 1h30m, ...

jobs:
  lint:
    run:
      - python3 -m ruff check .
      - python3 -m ruff format --check .
    inputs: ["**/*.py", pyproject.toml]    # the files that form the cache key
    tools: [python3]                       # its --version joins the cache key too

  test:
    needs: [lint]
    matrix:
      python: ["3.11", "3.12"]             # one job per value: test[python=3.11], ...
    run: python${{ matrix.python }} -m pytest -q
    inputs: ["src/**", "tests/**", pyproject.toml]
    retry: {max: 1, on: [infrastructure]}  # retry only when the machine failed

  build:
    needs: [test]
    uses: archive                          # a built-in step: a reproducible .tar.gz
    with:
      paths: ["src/**", pyproject.toml]
      output: dist/source.tar.gz
    outputs: [dist/source.tar.gz]          # kept, and handed to the jobs that need it

  deploy:
    needs: [build]
    rules:                                 # the first rule that matches decides
      - branch: [main]
      - tag: ["v*"]                        # no match: skipped (`if:` takes one condition)
    concurrency: {group: production, supersede: true}  # one at a time, newest wins
    secrets: [DEPLOY_HOST]
    run: scp dist/source.tar.gz "$DEPLOY_HOST:/srv/releases/"
"""
