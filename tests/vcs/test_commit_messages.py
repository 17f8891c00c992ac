"""Commit messages as people write them: Conventional Commits headers, closing keywords of
GitHub and GitLab, references, footers and git trailers; the trailer parser agrees with
`git interpret-trailers --parse`; hostile messages are read in bounded time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from conveyor.vcs.commit_messages import (
    LinkKind,
    Reference,
    log_messages,
    parse_header,
    parse_message,
    parse_trailers,
)

CLOSES, REFS = LinkKind.CLOSES, LinkKind.REFERENCES


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("feat: add the checkout", ("feat", None, False, "add the checkout")),
        ("fix(cart): empty cart crash", ("fix", "cart", False, "empty cart crash")),
        ("feat(api)!: drop v1", ("feat", "api", True, "drop v1")),
        ("refactor!: rename modules", ("refactor", None, True, "rename modules")),
        ("FEAT: shouting type", ("feat", None, False, "shouting type")),
        ("chore(deps-dev): bump ruff", ("chore", "deps-dev", False, "bump ruff")),
        ('Revert "feat: add the checkout"', ("revert", None, False, "feat: add the checkout")),
    ],
)
def test_conventional_headers(subject: str, expected: tuple[object, ...]) -> None:
    header = parse_header(subject)
    assert header is not None
    assert (header.type, header.scope, header.bang, header.subject) == expected


@pytest.mark.parametrize(
    "subject",
    [
        "Add the checkout",
        "feat:no space after the colon",
        "feat : space before the colon",
        "feat(): empty scope",
        "PROJ-45: a ticket, not a type",
        "feat(a(b)): nested scope",
        "",
        "fix:",
        "Merge branch 'main' into feature",
    ],
)
def test_subjects_that_are_not_conventional(subject: str) -> None:
    assert parse_header(subject) is None


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("fix: crash\n\nFixes #123", [Reference("#123", CLOSES)]),
        ("fix: crash\n\nfixes: #9", [Reference("#9", CLOSES)]),
        (
            "fix: a\n\nCloses #4, #5 and #6",
            [Reference("#4", CLOSES), Reference("#5", CLOSES), Reference("#6", CLOSES)],
        ),
        ("fix: a\n\nResolves acme/shop#77", [Reference("acme/shop#77", CLOSES)]),
        (
            "fix: a\n\nCloses https://github.com/acme/shop/issues/12",
            [Reference("acme/shop#12", CLOSES)],
        ),
        (
            "fix: a\n\nCloses https://gitlab.com/group/sub/shop/-/issues/3",
            [Reference("group/sub/shop#3", CLOSES)],
        ),
        ("feat: b\n\nImplements #8", [Reference("#8", CLOSES)]),  # GitLab's keyword
        ("fix: this closes #7 too", [Reference("#7", CLOSES)]),
        ("feat: c\n\nRefs PROJ-45", [Reference("PROJ-45", REFS)]),
        ("feat: c\n\nRefs: #12", [Reference("#12", REFS)]),
        ("feat: c\n\nRefs #12", [Reference("#12", REFS)]),
        ("feat: c\n\nSee also GH-99", [Reference("#99", REFS)]),
        ("feat: c (#31)", [Reference("#31", REFS)]),  # GitHub's squash-merge subject
        ("PROJ-45: login works", [Reference("PROJ-45", REFS)]),
        ("[OPS-2] rotate keys", [Reference("OPS-2", REFS)]),
        ("fix(PAY-9): rounding", [Reference("PAY-9", REFS)]),
        (
            "chore: x\n\nJira: PROJ-1\nRequirement: REQ-7",
            [Reference("PROJ-1", REFS), Reference("REQ-7", REFS)],
        ),
        ("fix: y\n\nRefs #3\nFixes #3", [Reference("#3", CLOSES)]),  # closing wins
        ("docs: UTF-8, SHA-256 and ISO-8601 notes", []),  # no keyword: not tickets
        ("docs: see &#123; and https://x.org/a#12 and C#1 and v1.2#3", []),
        ("feat: fixes nothing", []),
        ("fix: a\n\nFixes #0012", [Reference("#12", CLOSES)]),
    ],
)
def test_references(message: str, expected: list[Reference]) -> None:
    assert list(parse_message(message).references) == expected


def test_breaking_changes_from_the_bang_or_a_footer() -> None:
    footer = parse_message(
        "feat(api): new auth\n\nLong body.\n\nBREAKING CHANGE: tokens from v1 stop working\n"
        "Refs #12"
    )
    hyphen = parse_message("fix: x\n\nBREAKING-CHANGE: config key renamed")
    bang = parse_message("feat!: x")
    body_only = parse_message("feat: x\n\nBREAKING CHANGE: in the body\n\nand more text after")

    assert footer.breaking and footer.breaking_notes == ("tokens from v1 stop working",)
    assert footer.keys() == ("#12",)
    assert hyphen.breaking and hyphen.breaking_notes == ("config key renamed",)
    assert bang.breaking and bang.breaking_notes == ()
    assert not body_only.breaking  # not in the footer paragraph: prose, not a footer


def test_merge_and_revert_subjects() -> None:
    merged = parse_message("Merge pull request #5 from acme/feature\n\nfeat: thing")
    assert merged.merge and not merged.conventional
    assert parse_message('Revert "feat: x"\n\nThis reverts commit abc.').type == "revert"


def test_footer_continuation_lines_and_crlf() -> None:
    parsed = parse_message(
        "feat: x\r\n\r\nbody\r\n\r\nReviewed-by: Ada\r\nNote: first line\r\n  second line\r\n"
    )
    assert [(t.token, t.value) for t in parsed.trailers] == [
        ("Reviewed-by", "Ada"),
        ("Note", "first line second line"),
    ]


TRAILER_CASES = [
    "subject\n\nbody\n\nSigned-off-by: Ada <ada@example.org>\n",
    "subject\n\nSigned-off-by: Ada <a@b>\nCo-authored-by: Bob <b@c>\n",
    "subject\n\nbody line\nSigned-off-by: Ada <a@b>\n",  # 50 % trailers, one git's own
    "subject\n\nbody line\nmore text\nanother\nand more\nReviewed-by: Ada\n",  # 20 %, none
    "subject\n\nFoo: bar\n  continued here\nBaz: qux\n",
    "subject only\n",
    "Signed-off-by: Ada <a@b>\n",  # the subject's paragraph holds no trailers
    "subject\n\nparagraph one\n\nnot: a trailer because\nthis line is prose\n",
    "subject\n\nTicket: PROJ-1\nSigned-off-by: Ada\n(cherry picked from commit abc)\n",
    "subject\n\nKey :  spaced value\n",
]


@pytest.mark.parametrize("message", TRAILER_CASES)
def test_trailers_agree_with_git_interpret_trailers(message: str) -> None:
    git = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    )
    from_git = [tuple(line.split(": ", 1)) for line in git.stdout.splitlines()]
    ours = [(t.token, t.value) for t in parse_trailers(message.split("\n"))]
    assert ours == from_git


HOSTILE = [
    "Fixes " + "a/" * 50_000,
    "#" * 200_000,
    "Fixes " + ", #1" * 200_000,
    "x" * 2_000_000,
    "feat(" + "(" * 200_000 + "): x",
    "fix: x\n\n" + "Refs: " * 200_000,
    "fix: x\n\n" + "Signed-off-by: x\n" * 100_000,
    "Closes https://a.example/" + "c/" * 100_000 + "issues/1",
    "Fixes " + "A" * 100_000 + "-1",
    "Fixes #1 " * 100_000,
    "\n" * 500_000,
    "\x00\udcff\u202e fix: odd bytes",
]


@pytest.mark.parametrize("message", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_messages_are_read_quickly_and_bounded(message: str) -> None:
    started = time.perf_counter()
    parsed = parse_message(message)
    assert time.perf_counter() - started < 0.5
    assert len(parsed.references) <= 100
    assert len(parsed.subject) <= 2_000


def test_many_references_are_capped() -> None:
    message = "fix: x\n\n" + "\n".join(f"Refs #{n}" for n in range(1, 500))
    assert len(parse_message(message).references) == 100


def test_log_messages_reads_whole_messages_of_a_range(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(tmp_path), "-c", "user.name=Ada", "-c", "user.email=a@b", *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "chore: start")
    base = git("rev-parse", "HEAD")
    git("commit", "-q", "--allow-empty", "-m", "feat: one\n\nwith a body\x1f\n\nFixes #1")
    git("commit", "-q", "--allow-empty", "-m", "fix: two\n\nRefs PROJ-2")

    found = log_messages(tmp_path, "HEAD", base)

    assert [c.parsed().keys() for c in found] == [("PROJ-2",), ("#1",)]
    assert found[1].message.startswith("feat: one\n\nwith a body")
    assert len(log_messages(tmp_path, "HEAD")) == 3
