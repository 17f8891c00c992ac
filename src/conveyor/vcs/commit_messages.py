"""What a commit message says about itself: its Conventional Commits header
(`type(scope)!: subject`), its footers and git trailers (`BREAKING CHANGE:`,
`Signed-off-by:`, `Refs #12`), and the requirements and defects it links: closing
keywords as GitHub and GitLab read them (`Fixes #123`, `Closes group/project#4, #5`,
`Resolves https://.../issues/6`), references (`Refs PROJ-45`, `#12`), and trailers that
name a ticket (`Jira: PROJ-45`, `Requirement: REQ-7`).

It lives beside git, below the steps, so the commit-message gate (a step) and
`conveyor.observe` (release notes, requirements linked back) read messages one way.

Messages are hostile input: only the first `MAX_MESSAGE` characters and `MAX_LINE` of
each line are read, every pattern has bounded repetition, references are scanned one at
a time from a position (no pattern repeats a group of references), and at most
`MAX_REFERENCES` are kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from conveyor.vcs.git import run_git

MAX_MESSAGE = 65_536  # characters of a message that are parsed
MAX_LINE = 2_000  # characters of one line
MAX_REFERENCES = 100  # references kept per message
MAX_LIST = 20  # references after one keyword ("Fixes #1, #2 and #3")

# The types of the Angular convention, which Conventional Commits' tooling defaults to.
CONVENTIONAL_TYPES = (
    "feat",
    "fix",
    "docs",
    "style",
    "refactor",
    "perf",
    "test",
    "build",
    "ci",
    "chore",
    "revert",
)
FEATURE_TYPES = frozenset({"feat"})
FIX_TYPES = frozenset({"fix"})


class LinkKind(StrEnum):
    CLOSES = "closes"  # a closing keyword: the issue is done when this lands
    REFERENCES = "refs"  # mentioned: related work, not necessarily done


@dataclass(frozen=True)
class Reference:
    key: str  # "#123", "group/project#4", "PROJ-45", "REQ-7"
    kind: LinkKind


@dataclass(frozen=True)
class Trailer:
    token: str  # as written: "Signed-off-by", "BREAKING CHANGE", "Refs"
    value: str  # continuation lines joined by one space


@dataclass(frozen=True)
class Header:
    """A Conventional Commits header: `type(scope)!: subject`."""

    type: str  # lower case: the spec says types are not case-sensitive
    scope: str | None
    bang: bool  # "!" before the colon: a breaking change
    subject: str


@dataclass(frozen=True)
class ParsedMessage:
    subject: str  # the first line
    header: Header | None  # None: not a Conventional Commits header
    trailers: tuple[Trailer, ...]
    references: tuple[Reference, ...]
    breaking_notes: tuple[str, ...]  # the text of each BREAKING CHANGE footer
    merge: bool  # git's own "Merge branch ..." / "Merge pull request ..." subject

    @property
    def conventional(self) -> bool:
        return self.header is not None

    @property
    def breaking(self) -> bool:
        return bool(self.breaking_notes) or (self.header is not None and self.header.bang)

    @property
    def type(self) -> str | None:
        return self.header.type if self.header is not None else None

    @property
    def linked(self) -> bool:
        return bool(self.references)

    def keys(self) -> tuple[str, ...]:
        return tuple(reference.key for reference in self.references)


# --- patterns (each with bounded repetition) --------------------------------------------

_HEADER = re.compile(
    r"(?P<type>[A-Za-z][A-Za-z-]{0,31})"
    r"(?:\((?P<scope>[^()\r\n]{1,80})\))?"
    r"(?P<bang>!)?: (?P<subject>\S.*)"
)
_REVERT = re.compile(r'Revert "(?P<subject>.{1,1000})"')
_MERGE = re.compile(r"Merge (?:branch|branches|remote-tracking branch|pull request|tag|commit) ")
_TRAILER = re.compile(
    r"(?P<token>BREAKING[ -]CHANGE|[A-Za-z0-9][A-Za-z0-9-]{0,62})"
    r"(?:[ \t]{0,8}:[ \t]?|(?P<hash> #))(?P<value>.*)"
)
_GIT_GENERATED = ("signed-off-by", "(cherry picked from commit ")

_SEGMENT = r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,99}"  # a path segment; GitLab's "/-/" is none
_ISSUE_URL = (
    r"https?://[A-Za-z0-9.-]{1,253}(?::\d{1,5})?"
    rf"/(?P<url_repo>{_SEGMENT}(?:/{_SEGMENT}){{1,8}})"
    r"(?:/-)?/(?:issues|pull|merge_requests)/(?P<url_number>\d{1,9})"
)
_REPO_ISSUE = rf"(?P<repo>{_SEGMENT}(?:/{_SEGMENT}){{1,8}})#(?P<repo_number>\d{{1,9}})"
_KEY = r"(?P<key>[A-Z][A-Z0-9_]{1,19}-\d{1,9})"
_REFERENCE = re.compile(
    rf"(?:{_ISSUE_URL}|{_REPO_ISSUE}|(?:GH-|#)(?P<number>\d{{1,9}})|{_KEY})(?![\w/-])"
)
_SEPARATOR = re.compile(
    r"[ \t]{0,8}(?:,[ \t]{0,8}(?:and[ \t]{1,8})?|[ \t]{1,8}and[ \t]{1,8}|[ \t]{1,8})"
)
_CLOSING = (
    r"close|closes|closed|closing|fix|fixes|fixed|fixing|resolve|resolves|resolved|resolving"
    r"|implement|implements|implemented|implementing"
)
_REFERRING = r"refs?|references?|related|related to|relates to|see|see also|part of|addresses"
_KEYWORD = re.compile(
    rf"(?<![\w-])(?i:(?P<closing>{_CLOSING})|(?P<referring>{_REFERRING}))"
    r"(?:[ \t]{0,8}:)?[ \t]{1,8}(?=\S)"
)
# `#12` on its own (GitHub links it): not inside a word, a URL fragment or `&#12;`.
_BARE_NUMBER = re.compile(r"(?<![\w&#/])(?:GH-|#)(?P<number>\d{1,9})(?![\w-])")
_SUBJECT_KEY = re.compile(rf"\[?{_KEY}\]?(?::|[ \t])")
_TICKET_TRAILERS = frozenset(
    {
        "refs",
        "ref",
        "references",
        "related",
        "related-to",
        "see-also",
        "part-of",
        "issue",
        "issues",
        "jira",
        "ticket",
        "requirement",
        "requirements",
        "req",
        "defect",
        "bug",
    }
)
_CLOSING_TRAILERS = frozenset({"closes", "fixes", "resolves", "closed", "fixed", "resolved"})


def parse_message(message: str) -> ParsedMessage:
    """Everything the message says about itself; never raises on any text."""
    lines = [line[:MAX_LINE] for line in message[:MAX_MESSAGE].replace("\r\n", "\n").split("\n")]
    subject = lines[0].strip() if lines else ""
    header = parse_header(subject)
    trailers = parse_trailers(lines)
    found = _References()
    if header is not None and header.scope is not None:
        found.scan_keys_only(header.scope, LinkKind.REFERENCES)
    subject_key = _SUBJECT_KEY.match(subject)
    if subject_key is not None:
        found.add(subject_key.group("key"), LinkKind.REFERENCES)
    for line in lines:
        found.scan_line(line)
    for trailer in trailers:
        token = trailer.token.casefold()
        if token in _CLOSING_TRAILERS:
            found.scan_list(trailer.value, 0, LinkKind.CLOSES)
        elif token in _TICKET_TRAILERS:
            found.scan_list(trailer.value, 0, LinkKind.REFERENCES)
    notes = tuple(t.value for t in trailers if t.token in ("BREAKING CHANGE", "BREAKING-CHANGE"))
    return ParsedMessage(
        subject=subject,
        header=header,
        trailers=trailers,
        references=found.result(),
        breaking_notes=notes,
        merge=_MERGE.match(subject) is not None,
    )


def parse_header(subject: str) -> Header | None:
    """The Conventional Commits header of a subject line, or None. git's own revert
    subject (`Revert "feat: x"`) reads as type `revert`."""
    matched = _HEADER.fullmatch(subject.strip())
    if matched is not None:
        return Header(
            type=matched.group("type").lower(),
            scope=matched.group("scope"),
            bang=matched.group("bang") is not None,
            subject=matched.group("subject").strip(),
        )
    reverted = _REVERT.fullmatch(subject.strip())
    if reverted is not None:
        return Header("revert", None, False, reverted.group("subject"))
    return None


def parse_trailers(lines: list[str]) -> tuple[Trailer, ...]:
    """The trailers of the message's last paragraph, by git's rule: a paragraph that is
    not the subject's, whose lines are all trailers (or continuation lines), or at least
    a quarter of them with one that git itself writes (`Signed-off-by:`, `(cherry picked
    from commit ...)`). Conventional Commits' `Token #value` footers count as trailers."""
    paragraph = _last_paragraph(lines)
    if not paragraph:
        return ()
    parsed: list[Trailer] = []
    trailer_lines = 0
    git_generated = False
    for line in paragraph:
        if line[:1] in (" ", "\t") and parsed:
            last = parsed[-1]
            parsed[-1] = Trailer(last.token, f"{last.value} {line.strip()}".strip())
            continue
        if line.startswith(_GIT_GENERATED[1]):
            trailer_lines += 1
            git_generated = True
            continue
        matched = _TRAILER.fullmatch(line)
        if matched is None:
            parsed.append(Trailer("", line))  # a line of text: kept to count, dropped below
            continue
        trailer_lines += 1
        token = matched.group("token")
        git_generated = git_generated or token.casefold() == _GIT_GENERATED[0]
        value = matched.group("value").strip()
        parsed.append(Trailer(token, f"#{value}" if matched.group("hash") else value))
    texts = sum(1 for trailer in parsed if not trailer.token)
    every = texts == 0
    enough = trailer_lines * 4 >= trailer_lines + texts and git_generated
    if not (every or enough):
        return ()
    return tuple(trailer for trailer in parsed if trailer.token)


def _last_paragraph(lines: list[str]) -> list[str]:
    """The last block of non-blank lines, unless it starts at the subject."""
    end = len(lines)
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    start = end
    while start > 0 and lines[start - 1].strip():
        start -= 1
    if start == 0:
        return []  # the subject's paragraph holds no trailers
    return [line.rstrip() for line in lines[start:end]]


class _References:
    """References in the order first met; a key met as both keeps `closes`."""

    def __init__(self) -> None:
        self._kinds: dict[str, LinkKind] = {}

    def add(self, key: str, kind: LinkKind) -> None:
        if key in self._kinds:
            if kind is LinkKind.CLOSES:
                self._kinds[key] = kind
            return
        if len(self._kinds) < MAX_REFERENCES:
            self._kinds[key] = kind

    def result(self) -> tuple[Reference, ...]:
        return tuple(Reference(key, kind) for key, kind in self._kinds.items())

    def scan_line(self, line: str) -> None:
        for keyword in _KEYWORD.finditer(line):
            kind = LinkKind.CLOSES if keyword.group("closing") else LinkKind.REFERENCES
            self.scan_list(line, keyword.end(), kind)
        for bare in _BARE_NUMBER.finditer(line):
            self.add(f"#{int(bare.group('number'))}", LinkKind.REFERENCES)

    def scan_list(self, text: str, position: int, kind: LinkKind) -> None:
        """References from `position` on, separated by commas, "and" or spaces."""
        for _ in range(MAX_LIST):
            matched = _REFERENCE.match(text, position)
            if matched is None:
                return
            self.add(reference_key(matched), kind)
            separator = _SEPARATOR.match(text, matched.end())
            if separator is None:
                return
            position = separator.end()

    def scan_keys_only(self, text: str, kind: LinkKind) -> None:
        matched = re.fullmatch(_KEY, text.strip())
        if matched is not None:
            self.add(matched.group("key"), kind)


def reference_key(matched: re.Match[str]) -> str:
    """One spelling per issue: `#12` (GH-12 too), `group/project#4` (issue URLs too),
    `PROJ-45`."""
    if matched.group("url_number") is not None:
        return f"{matched.group('url_repo')}#{int(matched.group('url_number'))}"
    if matched.group("repo_number") is not None:
        return f"{matched.group('repo')}#{int(matched.group('repo_number'))}"
    if matched.group("number") is not None:
        return f"#{int(matched.group('number'))}"
    return matched.group("key")


# --- reading messages from git ------------------------------------------------------------

_FIELD = "\x1f"
_FORMAT = _FIELD.join(("%H", "%an <%ae>", "%ct", "%B"))


@dataclass(frozen=True)
class CommitMessage:
    sha: str
    author: str  # git's "Name <email>"
    committed_at: float
    message: str

    def parsed(self) -> ParsedMessage:
        return parse_message(self.message)


def log_messages(
    directory: Path,
    until: str,
    since: str | None = None,
    *,
    limit: int | None = None,
    merges: bool = True,
    after: float | None = None,
) -> list[CommitMessage]:
    """Newest first: the commits reachable from `until` and not from `since`, whole
    messages, at most `limit`; without merge commits when `merges` is False; only those
    committed after `after` (epoch seconds) when given. A ConveyorError when git fails."""
    revision = f"{since}..{until}" if since else until
    options = [f"--max-count={limit}"] if limit is not None else []
    if not merges:
        options.append("--no-merges")
    if after is not None:
        options.append(f"--since=@{int(after)}")
    output = run_git(
        directory,
        "log",
        "-z",
        "--no-show-signature",
        f"--format={_FORMAT}",
        *options,
        "--end-of-options",
        revision,
        "--",
    )
    text = output.decode("utf-8", errors="replace")
    return [_commit(record) for record in text.split("\0") if record]


def _commit(record: str) -> CommitMessage:
    sha, author, when, message = record.split(_FIELD, 3)
    return CommitMessage(sha, author, float(when), message.rstrip("\n"))
