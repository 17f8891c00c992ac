"""The `environments:` section: defaults, promotion order and the errors a user sees."""

from __future__ import annotations

from textwrap import dedent

import pytest

from conveyor.errors import SpecError
from conveyor.spec.loader import parse_pipeline
from conveyor.steps.registry import STEP_PARAMS

HEAD = "version: 1\njobs:\n  build: {run: make}\n"


def _load(environments: str, jobs: str = "") -> object:
    return parse_pipeline(HEAD + jobs + environments, "conveyor.yml", steps=STEP_PARAMS)


def _error(environments: str, jobs: str = "") -> SpecError:
    with pytest.raises(SpecError) as caught:
        _load(environments, jobs)
    return caught.value


def test_defaults_are_the_embedded_runtime_and_router() -> None:
    loaded = parse_pipeline(
        HEAD + "environments:\n  staging: {}\n", "conveyor.yml", steps=STEP_PARAMS
    )
    staging = loaded.pipeline.environments["staging"]
    assert staging.runtime == "process"
    assert staging.router == "builtin"
    assert (staging.port, staging.replicas, staging.drain) == (0, 1, 5.0)
    assert staging.health.readiness.path is None  # a TCP connect: most apps have no /healthz
    assert staging.health.liveness.path is None
    assert staging.hooks.before_traffic == [] and staging.hooks.after_traffic == []
    assert staging.health.ready_timeout == 60.0


def test_a_full_environment_loads() -> None:
    loaded = parse_pipeline(
        HEAD
        + dedent(
            """\
            environments:
              staging:
                runtime: podman
                router: haproxy
                port: 8080
                replicas: 3
                health: {readiness: {path: /ready, interval: 200ms}, ready_timeout: 2m}
                env: {MODE: staging}
                secrets: [API_TOKEN]
                smoke:
                  - http: /ready
                    status: 204
                  - command: ./smoke.sh
                    timeout: 30s
              production: {after: staging}
            """
        ),
        "conveyor.yml",
        steps=STEP_PARAMS,
    )
    staging = loaded.pipeline.environments["staging"]
    assert staging.health.readiness.interval == pytest.approx(0.2)
    assert staging.health.ready_timeout == 120.0
    assert [check.title for check in staging.smoke] == ["GET /ready", "./smoke.sh"]
    assert loaded.pipeline.environments["production"].after == "staging"


@pytest.mark.parametrize(
    ("environments", "where", "fragment"),
    [
        (
            "environments:\n  production: {after: stagin}\n  staging: {}\n",
            (5, 23),
            "unknown environment 'stagin' in after",
        ),
        ("environments:\n  staging: {after: staging}\n", (5, 20), "comes after itself"),
        (
            "environments:\n  a: {after: b}\n  b: {after: a}\n",
            (5, 14),
            "promotion order loops: a -> b -> a",
        ),
        (
            "environments:\n  staging: {runtime: docker}\n",
            (5, 22),
            "unknown runtime 'docker' (known: kubernetes, podman, process)",
        ),
        ("environments:\n  Staging: {}\n", (5, 3), "environment name"),
        ("environments:\n  staging: {replicas: 0}\n", (5, 23), "greater than or equal to 1"),
        (
            "environments:\n  staging:\n    smoke: [{http: /a, command: x}]\n",
            (6, 13),
            "exactly one of `http` or `command`",
        ),
        ("environments:\n  staging: {env: {1BAD: x}}\n", (5, 13), "not a valid environment"),
        (
            "environments:\n  staging:\n    samples: {full: 2d, keep: 1d}\n",
            (6, 5),
            "full must not be longer than keep",
        ),
    ],
)
def test_errors_name_the_place(environments: str, where: tuple[int, int], fragment: str) -> None:
    error = _error(environments)
    assert fragment in error.message
    assert (error.line, error.column) == where


def test_sample_retention_defaults_and_durations() -> None:
    text = "environments:\n  a: {}\n  b: {samples: {full: 1h, every: 5m, keep: 7d}}\n"
    loaded = parse_pipeline(HEAD + text, "conveyor.yml", steps=STEP_PARAMS)
    environments = loaded.pipeline.environments
    default, custom = environments["a"].samples, environments["b"].samples
    assert (default.full, default.every, default.keep) == (6 * 3600, 60, 30 * 86400)
    assert (custom.full, custom.every, custom.keep) == (3600, 300, 7 * 86400)


def test_a_deploy_job_must_name_a_declared_environment() -> None:
    jobs = "  ship:\n    uses: deploy\n    with: {environment: prod}\n"
    error = _error("environments:\n  production: {}\n", jobs)
    assert "unknown environment 'prod'" in error.message
    assert error.key_path == "jobs.ship.with.environment"
    assert error.hint == "environments: production"


def test_a_judged_flag_release_needs_prometheus_and_rising_steps() -> None:
    router = "environments:\n  production:\n    flags: {analysis: {}}\n"
    falling = (
        "environments:\n  production:\n    flags:\n      steps: [50, 10]\n"
        "      analysis: {provider: prometheus, prometheus: {url: 'http://p', "
        "requests: r, errors: e}}\n"
    )
    assert "router cannot tell them apart" in _error(router).message
    assert "rising percentages" in _error(falling).message


def test_hooks_load_with_a_string_split_as_words_and_a_default_timeout() -> None:
    text = dedent(
        """\
        environments:
          staging:
            hooks:
              before_traffic:
                - name: init-db
                  command: flask --app notes init-db
                - command: "python -c 'print(1)'"
                  timeout: 30s
              after_traffic:
                - {command: [notify, --to, "a b"], on_failure: continue}
        """
    )
    hooks = parse_pipeline(HEAD + text, "conveyor.yml", steps=STEP_PARAMS).pipeline
    staging = hooks.environments["staging"].hooks
    first, second = staging.before_traffic
    assert (first.title, first.command, first.timeout) == (
        "init-db",
        ["flask", "--app", "notes", "init-db"],
        300.0,
    )
    assert (second.command, second.timeout) == (["python", "-c", "print(1)"], 30.0)
    assert second.title == "python -c 'print(1)'"
    [after] = staging.after_traffic
    assert (after.command, after.on_failure.value) == (["notify", "--to", "a b"], "continue")
    assert first.on_failure.value == "fail"


HOOK = "environments:\n  staging:\n    hooks:\n      {phase}:\n        - {hook}\n"


@pytest.mark.parametrize(
    ("hook", "where", "fragment"),
    [
        ("{command: ''}", (8, 21), "a hook needs a command"),
        ("{command: []}", (8, 21), "a hook needs a command"),
        ("{command: migrate, timeout: soon}", (8, 39), "invalid duration 'soon'"),
        ("{command: migrate, timeout: 0}", (8, 39), "greater than zero"),
        ("{command: migrate, timout: 1m}", (8, 30), "unknown key 'timout'"),
        ('{command: "echo \'open"}', (8, 21), "No closing quotation"),
        ("{command: x, on_failure: ignore}", (8, 36), "must be 'fail' or 'continue'"),
    ],
)
def test_hook_errors_name_the_place(hook: str, where: tuple[int, int], fragment: str) -> None:
    error = _error(HOOK.format(phase="before_traffic", hook=hook))
    assert fragment in error.message
    assert (error.line, error.column) == where
    assert "environments.staging.hooks.before_traffic[0]" in (error.key_path or "")


def test_an_unknown_hook_phase_is_named_with_a_suggestion() -> None:
    error = _error("environments:\n  staging:\n    hooks:\n      before_trafic: []\n")
    assert "unknown key 'before_trafic'" in error.message
    assert error.hint == "did you mean 'before_traffic'?"


def test_a_probe_path_still_loads() -> None:
    text = "environments:\n  staging: {health: {readiness: {path: /ready}}}\n"
    loaded = parse_pipeline(HEAD + text, "conveyor.yml", steps=STEP_PARAMS).pipeline
    assert loaded.environments["staging"].health.readiness.path == "/ready"
    error = _error(text.replace("/ready", "ready"))
    assert "should match pattern '^/'" in error.message
    assert error.key_path == "environments.staging.health.readiness.path"


def test_two_environments_secrets_may_not_share_a_scoped_variable() -> None:
    text = "environments:\n  prod:\n    secrets: [EU_DB]\n  prod-eu:\n    secrets: [A, DB]\n"
    error = _error(text)
    assert error.message.endswith(
        "secret 'DB' of 'prod-eu' and secret 'EU_DB' of 'prod' are both read from "
        "CONVEYOR_SECRET_PROD_EU_DB"
    )
    assert error.key_path == "environments.prod-eu.secrets[1]"
    assert (error.line, error.column) == (8, 18)


def test_the_same_secret_name_in_two_environments_is_fine() -> None:
    text = "environments:\n  staging: {secrets: [DB]}\n  production: {secrets: [DB]}\n"
    loaded = parse_pipeline(HEAD + text, "conveyor.yml", steps=STEP_PARAMS)
    assert [e.secrets for e in loaded.pipeline.environments.values()] == [["DB"], ["DB"]]
