"""The `forge:` section of conveyor.yml: which forge sends this project's webhooks and
gets its commit statuses. Only what is not secret lives here; the webhook secret and the
API token come from `CONVEYOR_FORGE_SECRET` / `CONVEYOR_FORGE_TOKEN` or the state
folder's `forge.env`, never from the repository.

    forge:
      kind: github                   # github | gitlab | gitea | forgejo
      repository: acme/shop          # its full name on the forge
      clone_url: https://github.com/acme/shop.git   # where the server fetches commits
      api_url: https://api.github.com               # default per kind
      branches: [main, "release/*"]  # default: every branch
      status_context: conveyor       # statuses are named <status_context>/<pipeline>
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from conveyor.spec.globs import check_glob
from conveyor.spec.types import ForgeName

REPOSITORY_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$"
CONTEXT_PATTERN = r"^[A-Za-z0-9_./-]+$"


class ForgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ForgeName = Field(description="A registered forge: github, gitlab, gitea, forgejo.")
    repository: str = Field(
        max_length=255,
        description="The repository's full name on the forge: owner/name, group/project.",
    )
    clone_url: str = Field(
        min_length=1,
        max_length=1024,
        description="Where the server fetches pushed commits from (never a payload's URL).",
    )
    api_url: str | None = Field(
        default=None,
        description="The forge's API root; default api.github.com, gitlab.com/api/v4, "
        "or <host>/api/v1 of the clone URL for Gitea and Forgejo.",
    )
    branches: list[str] | None = Field(
        default=None, min_length=1, description="Branch globs that run; default every branch."
    )
    status_context: str = Field(
        default="conveyor",
        pattern=CONTEXT_PATTERN,
        max_length=100,
        description="Commit statuses are named <status_context>/<pipeline>.",
    )
    statuses: bool = Field(default=True, description="Send commit statuses back to the forge.")

    @field_validator("repository")
    @classmethod
    def _full_name(cls, value: str) -> str:
        if not re.match(REPOSITORY_PATTERN, value):
            raise ValueError("must be the full name on the forge: owner/name or group/project")
        return value

    @field_validator("clone_url", "api_url")
    @classmethod
    def _no_credentials(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).password is not None:
            raise ValueError(
                "must not hold a password: conveyor.yml is in the repository; put the "
                "token in CONVEYOR_FORGE_TOKEN or .conveyor/forge.env"
            )
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("branches")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [check_glob(pattern) for pattern in value]
