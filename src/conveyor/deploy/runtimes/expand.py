"""`$(NAME)` in an image's command, replaced by the variable's value when it runs.

Kubernetes' rule for a container's command and args, so an image's entrypoint can name
what only the runtime knows, without a shell in the image:
`[python, -m, gunicorn, -b, "$(HOST):$(PORT)", "notes:create_app()"]`. A reference to a
variable the command does not have is left as written; `$$(NAME)` is the literal
`$(NAME)`. Values are not expanded again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand_references(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    return [_REFERENCE.sub(lambda match: _value(match, env), argument) for argument in argv]


def has_references(argv: Sequence[str]) -> bool:
    return any(_REFERENCE.search(argument) for argument in argv)


def _value(match: re.Match[str], env: Mapping[str, str]) -> str:
    name = match.group(1)
    if name is None:
        return "$"  # `$$`: an escaped dollar
    return env.get(name, match.group(0))
