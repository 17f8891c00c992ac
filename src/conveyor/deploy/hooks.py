"""Release hooks (conveyor.yml `hooks:`): commands run once per deploy inside the
release's image, through the runtime (`Runtime.run_task`), under the environment's
deploy lock.

- `before_traffic` hooks run in order before the release starts (its replicas would
  otherwise each run, say, a migration at once on shared data): a failure, or a hook
  killed at its timeout, fails the deploy with nothing routed to the new release.
- `after_traffic` hooks run in order once the release carries all traffic (after the
  switch for direct and rolling, after full promotion and bake for a canary), before it
  is confirmed: a failure rolls back, as Helm marks a release whose post-upgrade hook
  failed as failed. `on_failure: continue` on a hook records the failure and goes on.

Each run is recorded as `release.hook` events of the deploy (started, then its result
with exit code and duration); a deploy resumed by another controller skips the hooks
this deploy already ran, so a release that had traffic never runs a before-traffic hook.
Hooks get the release's environment plus CONVEYOR_HOOK (the phase).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from conveyor.deploy.model import ReleaseSpec
from conveyor.deploy.runtimes.base import Runtime
from conveyor.deploy.runtimes.tasks import TaskResult
from conveyor.spec.hooks import Hook, HookFailure


class HookPhase(StrEnum):
    BEFORE_TRAFFIC = "before_traffic"
    AFTER_TRAFFIC = "after_traffic"


class HookResult(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a non-zero exit (or a program that cannot start)
    TIMED_OUT = "timed_out"  # killed at its timeout


Recorder = Callable[..., None]  # records one `release.hook` event with these fields


def run_hooks(
    runtime: Runtime,
    release: ReleaseSpec,
    phase: HookPhase,
    hooks: Sequence[Hook],
    *,
    done: set[int],
    say: Callable[[str], None],
    record: Recorder,
) -> str | None:
    """Run `hooks` in order, but those whose index is in `done`; the reason the deploy
    must stop (a hook that failed with `on_failure: fail`), or None."""
    env = {**release.env, "CONVEYOR_HOOK": phase.value}
    runner = _Runner(runtime, replace(release, env=env), phase, say, record)
    for index, hook in enumerate(hooks):
        if index in done:
            say(f"hook {hook.title} ({phase.value}) already ran in this deploy")
            continue
        failure = runner.run(index, hook)
        if failure is None:
            continue
        if hook.on_failure is HookFailure.CONTINUE:
            say(f"{failure} (on_failure: continue)")
            continue
        return failure
    return None


@dataclass(frozen=True)
class _Runner:
    runtime: Runtime
    release: ReleaseSpec
    phase: HookPhase
    say: Callable[[str], None]
    record: Recorder

    def run(self, index: int, hook: Hook) -> str | None:
        """One hook, its events and its output; its failure described, or None."""
        fields: dict[str, Any] = {
            "release": self.release.release_id,
            "phase": self.phase.value,
            "index": index,
            "hook": hook.title,
        }
        self.say(f"hook {hook.title} ({self.phase.value}): running, timeout {hook.timeout:g} s")
        started = time.time()  # wall time: shown to people
        self.record(**fields, result=HookResult.RUNNING.value)

        def show(line: str) -> None:
            self.say(f"[{hook.title}] {line}")

        result = self.runtime.run_task(self.release, hook.command, hook.timeout, show)
        state = _state_of(result)
        self.record(
            **fields,
            result=state.value,
            exit_code=result.exit_code,
            started_at=round(started, 3),
            seconds=round(result.seconds, 3),
            on_failure=hook.on_failure.value,
        )
        if state is HookResult.SUCCEEDED:
            self.say(f"hook {hook.title}: succeeded in {result.seconds:.1f} s")
            return None
        failure = describe_failure(hook, self.phase, result)
        self.say(failure)
        return failure


def _state_of(result: TaskResult) -> HookResult:
    if result.timed_out:
        return HookResult.TIMED_OUT
    return HookResult.SUCCEEDED if result.succeeded else HookResult.FAILED


def describe_failure(hook: Hook, phase: HookPhase, result: TaskResult) -> str:
    if result.timed_out:
        what = f"was killed at its timeout of {hook.timeout:g} s"
    else:
        what = f"exited with code {result.exit_code}"
    last = f": {result.last_line.strip()[:200]}" if result.last_line.strip() else ""
    return f"{phase.value} hook {hook.title!r} {what}{last}"


def finished_indexes(events: Sequence[Mapping[str, Any]], phase: HookPhase) -> set[int]:
    """Indexes of the hooks of `phase` that ran to an accepted end (succeeded, or failed
    with `on_failure: continue`), from a deploy's `release.hook` events."""
    done: set[int] = set()
    for data in events:
        if data.get("phase") != phase.value or data.get("result") == HookResult.RUNNING:
            continue
        accepted = data.get("result") == HookResult.SUCCEEDED or (
            data.get("on_failure") == HookFailure.CONTINUE
        )
        if accepted:
            done.add(int(data.get("index", -1)))
    return done
