"""The `forge:` section: names from the forge table, no credentials in the repository,
errors at file:line with the key path."""

from __future__ import annotations

import pytest

from conveyor.errors import SpecError, SpecErrors
from conveyor.spec.loader import parse_pipeline
from conveyor.steps.registry import STEP_PARAMS

HEAD = "version: 1\njobs:\n  a: {run: x}\nforge:\n"
GOOD = (
    "  kind: gitlab\n  repository: acme/platform/shop\n  clone_url: git@gitlab.com:acme/shop.git\n"
)


def test_a_forge_section_loads_with_its_defaults() -> None:
    forge = parse_pipeline(HEAD + GOOD, "conveyor.yml", steps=STEP_PARAMS).pipeline.forge
    assert forge is not None
    assert (forge.kind, forge.repository, forge.api_url, forge.branches) == (
        "gitlab",
        "acme/platform/shop",
        None,
        None,
    )
    assert (forge.status_context, forge.statuses) == ("conveyor", True)


def test_no_forge_section_is_none() -> None:
    assert parse_pipeline(HEAD[:-7], "conveyor.yml", steps=STEP_PARAMS).pipeline.forge is None


@pytest.mark.parametrize(
    ("lines", "where", "message"),
    [
        ("  kind: bitbucket\n", (7, 9), "unknown forge 'bitbucket' (known: forgejo, gitea"),
        ("  repository: shop\n", (7, 15), "forge.repository: must be the full name"),
        (
            "  clone_url: https://ada:s3cret@github.com/acme/shop.git\n",
            (7, 14),
            "must not hold a password",
        ),
        ("  api_url: ftp://example.org\n", (8, 12), "must be an http:// or https:// URL"),
        ("  status_context: 'two words'\n", (8, 19), "forge.status_context"),
        ("  token: abc\n", (8, 3), "token"),
    ],
)
def test_a_bad_value_is_located(lines: str, where: tuple[int, int], message: str) -> None:
    key = lines.split(":", maxsplit=1)[0].strip()
    kept = "".join(line + "\n" for line in GOOD.splitlines() if line.split(":")[0].strip() != key)
    text = HEAD + kept + lines
    with pytest.raises((SpecError, SpecErrors)) as raised:
        parse_pipeline(text, "conveyor.yml", steps=STEP_PARAMS)
    shown = str(raised.value) + " ".join(str(e) for e in getattr(raised.value, "errors", []))
    assert f"conveyor.yml:{where[0]}:{where[1]}" in shown, shown
    assert message in shown, shown
    assert "s3cret" not in shown
