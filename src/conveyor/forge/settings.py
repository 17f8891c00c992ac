"""Everything the server needs to talk to the project's forge: the `forge:` section of
conveyor.yml (nothing secret) and the two secrets, read from the environment first, then
from the state folder's `forge.env` (KEY=value lines, private to its owner):

    CONVEYOR_FORGE_SECRET   the webhook secret (GitLab: the secret token)
    CONVEYOR_FORGE_TOKEN    an API token allowed to set commit statuses
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from conveyor.engine.secrets import parse_dotenv
from conveyor.errors import ConveyorError
from conveyor.forge.gitea import api_url_from_clone_url
from conveyor.forge.model import Forge
from conveyor.forge.registry import forge_named
from conveyor.spec.forge import ForgeConfig
from conveyor.spec.globs import match_any

SECRET_VARIABLE = "CONVEYOR_FORGE_SECRET"  # noqa: S105 (a variable name)
TOKEN_VARIABLE = "CONVEYOR_FORGE_TOKEN"  # noqa: S105 (a variable name)
FORGE_ENV_FILE = "forge.env"  # in the state folder


@dataclass(frozen=True)
class ForgeSettings:
    config: ForgeConfig
    forge: Forge
    secret: str | None  # None: every delivery is refused (nothing to verify it with)
    token: str | None  # None: no statuses are sent
    api_url: str | None

    def owns(self, repository: str, clone_urls: tuple[str, ...]) -> bool:
        """Whether a payload's repository is the project's: its full name, or one of its
        URLs, is the configured one."""
        if repository.casefold() == self.config.repository.casefold():
            return True
        wanted = same_repository_key(self.config.clone_url)
        return any(same_repository_key(url) == wanted for url in clone_urls)

    def builds_branch(self, branch: str) -> bool:
        return self.config.branches is None or match_any(branch, self.config.branches)

    def status_context(self, pipeline: str) -> str:
        return f"{self.config.status_context}/{pipeline}"


def forge_settings(
    config: ForgeConfig, state_dir: Path, environ: Mapping[str, str]
) -> ForgeSettings:
    values = _forge_env(state_dir / FORGE_ENV_FILE)
    forge = forge_named(config.kind)
    api_url = config.api_url or forge.default_api_url or api_url_from_clone_url(config.clone_url)
    return ForgeSettings(
        config=config,
        forge=forge,
        secret=environ.get(SECRET_VARIABLE) or values.get(SECRET_VARIABLE),
        token=environ.get(TOKEN_VARIABLE) or values.get(TOKEN_VARIABLE),
        api_url=api_url,
    )


def same_repository_key(url: str) -> str:
    """A URL without what does not name another repository: a trailing `.git` or `/`,
    the case of the scheme and host, any user name."""
    text = url.strip().rstrip("/").removesuffix(".git")
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname:
        return text
    host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), host, parts.path, "", ""))


def _forge_env(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ConveyorError(
            f"{path} is readable by other users", hint=f"make it private: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConveyorError(f"{path} is not valid UTF-8") from None
    return parse_dotenv(text, source=str(path))
