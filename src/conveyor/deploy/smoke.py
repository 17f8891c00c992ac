"""Smoke checks run right after each deploy against the environment's URL (the router).

Every check runs, even after a failure, so the report names everything that is wrong.
Only a check that could not get an answer (connection refused, dropped, timed out) is
retried: a wrong status or body is a real answer and fails at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from pathlib import Path

import httpx

from conveyor.spec.environments import SmokeCheck

SHELL = "/bin/sh"
ENV_URL_VARIABLE = "CONVEYOR_ENV_URL"
OUTPUT_TAIL_LINES = 5
OUTPUT_TAIL_CHARS = 500
# After the group is killed its pipes close at once, unless something left the group.
PIPE_DRAIN_TIMEOUT = 2.0

# No answer at all: worth another try (a replica restarting, a route being swapped).
_UNANSWERED = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class SmokeVerdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


@dataclass(frozen=True)
class SmokeResult:
    title: str
    verdict: SmokeVerdict
    detail: str = ""  # why it failed; empty when it passed
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.verdict is SmokeVerdict.PASSED


@dataclass(frozen=True)
class _Outcome:
    """One attempt of a check: its verdict, why, and whether another try may help."""

    verdict: SmokeVerdict
    detail: str = ""
    retryable: bool = False


_PASS = _Outcome(SmokeVerdict.PASSED)


def run_smoke(
    checks: Sequence[SmokeCheck],
    base_url: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    retries: int = 2,
    retry_delay: float = 0.5,
    headers: Mapping[str, str] | None = None,
    mask: Callable[[str], str] = lambda text: text,
) -> list[SmokeResult]:
    """Run every check in order against `base_url`; one result per check. `headers` go
    with every HTTP check (e.g. the router's version pin, to test a canary before it has
    any share of the traffic). `mask` hides the secrets of `env` in each result's detail
    (a failing command's output may print them)."""
    command_env = {**os.environ, **(env or {}), ENV_URL_VARIABLE: base_url}
    # trust_env=False: a proxy from the environment must not sit between us and 127.0.0.1.
    with httpx.Client(
        base_url=base_url, follow_redirects=False, trust_env=False, headers=dict(headers or {})
    ) as client:
        results = []
        for check in checks:
            started = time.monotonic()
            if check.http is not None:
                attempt = partial(_http_attempt, client, check)
                outcome = _with_retries(attempt, retries, retry_delay)
            else:
                outcome = _run_command(check, command_env, cwd, mask)
            elapsed = time.monotonic() - started
            detail = mask(outcome.detail)
            results.append(SmokeResult(check.title, outcome.verdict, detail, elapsed))
    return results


def smoke_passed(results: Sequence[SmokeResult]) -> bool:
    return all(result.passed for result in results)


def describe_failures(results: Sequence[SmokeResult]) -> str:
    """One line per failed check, e.g. for the message of a rolled-back deploy."""
    return "\n".join(_failure_line(result) for result in results if not result.passed)


def _failure_line(result: SmokeResult) -> str:
    first, *output = result.detail.splitlines() or [""]
    line = " ".join([first, " | ".join(output)]) if output else first
    # An HTTP detail already starts with its default title ("GET /healthz: ...").
    return line if line.startswith(f"{result.title}:") else f"{result.title}: {line}"


def _with_retries(attempt: Callable[[], _Outcome], retries: int, retry_delay: float) -> _Outcome:
    attempts = 1
    outcome = attempt()
    while outcome.retryable and attempts <= retries:
        time.sleep(retry_delay)
        attempts += 1
        outcome = attempt()
    if outcome.retryable and attempts > 1:
        return _Outcome(outcome.verdict, f"{outcome.detail} (after {attempts} attempts)")
    return outcome


def _http_attempt(client: httpx.Client, check: SmokeCheck) -> _Outcome:
    assert check.http is not None
    request = f"{check.method} {check.http}"
    try:
        response = client.request(check.method, check.http, timeout=check.timeout)
    except httpx.TimeoutException:
        return _Outcome(
            SmokeVerdict.FAILED, f"{request}: no answer within {check.timeout:g}s", retryable=True
        )
    except _UNANSWERED as exc:
        reason = str(exc) or type(exc).__name__
        return _Outcome(
            SmokeVerdict.FAILED,
            f"{request}: cannot reach {client.base_url}: {reason}",
            retryable=True,
        )
    except httpx.HTTPError as exc:
        return _Outcome(SmokeVerdict.FAILED, f"{request}: {exc}")
    if response.status_code != check.status:
        return _Outcome(
            SmokeVerdict.FAILED, f"{request}: expected {check.status}, got {response.status_code}"
        )
    if check.body_contains is not None and check.body_contains not in response.text:
        return _Outcome(
            SmokeVerdict.FAILED, f"{request}: body does not contain {check.body_contains!r}"
        )
    return _PASS


def _run_command(
    check: SmokeCheck, env: Mapping[str, str], cwd: Path | None, mask: Callable[[str], str]
) -> _Outcome:
    assert check.command is not None
    try:
        process = subprocess.Popen(
            [SHELL, "-c", check.command],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own group: a timeout kills what it started too
        )
    except OSError as exc:
        return _Outcome(SmokeVerdict.FAILED, f"cannot start {SHELL} in {cwd}: {exc.strerror}")
    with process:
        timed_out = False
        try:
            output, _ = process.communicate(timeout=check.timeout)
        except subprocess.TimeoutExpired:
            # The shell may have exited while something it started still holds the pipe:
            # then its exit code is the verdict.
            timed_out = process.poll() is None
            _kill_group(process.pid)
            output = _drain(process)
        _kill_group(process.pid)  # what it left running in the background
    output = mask(output)  # whole, before the tail is cut: a secret cut in two is found
    if timed_out:
        return _Outcome(
            SmokeVerdict.FAILED, _with_output(f"timed out after {check.timeout:g}s", output)
        )
    if process.returncode == 0:
        return _PASS
    return _Outcome(SmokeVerdict.FAILED, _with_output(_exit_reason(process.returncode), output))


def _drain(process: subprocess.Popen[str]) -> str:
    try:
        output, _ = process.communicate(timeout=PIPE_DRAIN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return ""  # a process that left the group holds the pipe; Popen.__exit__ closes it
    return output


def _kill_group(group: int) -> None:
    # ProcessLookupError: the whole group has exited already.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _with_output(reason: str, output: str) -> str:
    tail = _output_tail(output)
    return f"{reason}; output:\n{tail}" if tail else reason


def _output_tail(output: str) -> str:
    """The last few non-empty lines, at most OUTPUT_TAIL_CHARS characters."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    tail = "\n".join(lines[-OUTPUT_TAIL_LINES:])
    if len(tail) > OUTPUT_TAIL_CHARS:
        tail = "…" + tail[-(OUTPUT_TAIL_CHARS - 1) :]
    return tail
