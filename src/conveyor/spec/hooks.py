"""Release hooks: commands run once per release, inside its image, around its traffic.

    hooks:
      before_traffic:                       # before the release gets any traffic
        - name: init-db
          command: flask --app notes init-db  # or [flask, --app, notes, init-db]
          timeout: 2m                       # default 5m; then killed, and failed
      after_traffic:                        # once the release carries all traffic
        - command: [python, -m, notes.warm_cache]
          on_failure: continue              # default fail: a failure rolls back

A string command is split as a POSIX shell would split words (`shlex.split`), but no
shell runs it: no pipes, globs or variables, exactly as with the list form.
"""

from __future__ import annotations

import shlex
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.spec.types import Duration

DEFAULT_HOOK_TIMEOUT = 300.0


class HookFailure(StrEnum):
    FAIL = "fail"  # before traffic: the deploy fails; after traffic: it rolls back
    CONTINUE = "continue"  # recorded and shown; the deploy goes on


class Hook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        default=None, min_length=1, max_length=100, description="Shown in logs and events."
    )
    command: list[str] = Field(
        description="argv, or a string split into words as a shell would (no shell runs it)."
    )
    timeout: Duration = Field(
        default=DEFAULT_HOOK_TIMEOUT, description="Then the hook is killed and has failed."
    )
    on_failure: HookFailure = Field(
        default=HookFailure.FAIL,
        description="fail: the deploy fails (before traffic) or rolls back (after traffic); "
        "continue: the failure is recorded and the deploy goes on.",
    )

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return shlex.split(value)
            except ValueError as error:  # an unclosed quote
                raise ValueError(f"cannot split the command into words: {error}") from None
        return value

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value or not value[0]:
            raise ValueError("a hook needs a command (a program and its arguments)")
        return value

    @property
    def title(self) -> str:
        return self.name or shlex.join(self.command)


class Hooks(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    before_traffic: list[Hook] = Field(
        default_factory=list,
        description="Run in order, once per deploy, before the release gets any traffic.",
    )
    after_traffic: list[Hook] = Field(
        default_factory=list,
        description="Run in order once the release carries all traffic, before it is confirmed.",
    )
