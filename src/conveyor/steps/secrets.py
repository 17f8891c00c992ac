"""The `secrets` step: detect-secrets over the workspace and over the commits of the run.

`run` (cached by content) scans the workspace's files: tracked and untracked, but not
those .gitignore excludes, nor `.git/` and `.conveyor-out/`. `finalize` (never cached)
then scans the lines each commit of the run added, because a secret committed and removed
again within the range is still in the history, and a tree that happens to equal an
earlier, cached one says nothing about the commits that led to it. The range is
`CONVEYOR_PREVIOUS_SHA..HEAD` (the last successful run's commit on this branch), or
HEAD's own commit when there was none.

Each commit's added lines are written, at their own line numbers, into scratch files that
mirror the paths, and one `detect-secrets scan` reads them all. The report never carries
the secret: no snippet, and the fingerprint hashes detect-secrets' own hash of it (so it
survives lines moving), with the rule and the path.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from conveyor.engine.executors.base import ExecRequest, ExecResult, LogSink, Stream
from conveyor.engine.step import RAW_DIR, StepContext, failed
from conveyor.engine.tool_output import ScanFailed
from conveyor.findings.accepted import BASELINE_FILE
from conveyor.findings.exceptions import EXCEPTIONS_FILE
from conveyor.findings.fingerprint import SourceLines, assign_fingerprints
from conveyor.findings.model import Category, Finding, Level
from conveyor.spec.globs import match_any
from conveyor.states import FailureClass
from conveyor.steps.findings_step import (
    FindingsStep,
    ScannerParams,
    ScanResult,
    raw_findings_path,
    require_tool,
)
from conveyor.steps.tool_env import ResolvedTool

TOOL = "detect-secrets"
# detect-secrets' own inline marker: the line is skipped, and the diff shows who added it.
ALLOWLIST_PRAGMA = "# pragma: allowlist secret"
POLICY_FILES = frozenset({EXCEPTIONS_FILE, BASELINE_FILE})
TEST_FOLDERS = frozenset({"tests", "test", "testing", "fixtures", "testdata"})
PREVIOUS_SHA_ENV = "CONVEYOR_PREVIOUS_SHA"
# Files per detect-secrets process, to keep the command line well under the OS limit.
BATCH = 500
_COMMIT_MARK = "\x1e"  # starts the line naming each commit in the `git log` output
_HUNK = re.compile(r"^@@+ -[\d,]+ (?:-[\d,]+ )*\+(\d+)(?:,\d+)? @@")
_C_ESCAPE = re.compile(rb"\\([0-7]{3}|.)")
_ESCAPES = {b"a": 7, b"b": 8, b"t": 9, b"n": 10, b"v": 11, b"f": 12, b"r": 13}


class SecretsParams(ScannerParams):
    commits: bool = Field(
        default=True,
        description="Also scan the lines added by each commit since the last successful run.",
    )


@dataclass(frozen=True)
class Hit:
    """One detect-secrets result; `hashed` is its SHA-1 of the secret, never the secret."""

    rule: str
    path: str
    line: int
    hashed: str
    commit: str | None = None


class SecretsStep(FindingsStep):
    name: ClassVar[str] = "secrets"
    params_model: ClassVar[type[BaseModel]] = SecretsParams
    category: ClassVar[Category] = Category.SECRET
    version: ClassVar[str] = "2"  # 2: fixture hints in messages

    async def scan(self, params: BaseModel, ctx: StepContext) -> ScanResult:
        assert isinstance(params, SecretsParams)
        tool = require_tool(ctx, TOOL, params)
        files = [f for f in await workspace_files(ctx) if selected(f, params.checked_paths())]
        version, hits = await detect(ctx, tool, ctx.workspace, files)
        findings = findings_of(hits, ctx.workspace)
        return ScanResult(findings, {TOOL: version}, len(files), located={TOOL: tool})

    async def finalize(
        self, params: BaseModel, ctx: StepContext, ran: ExecResult | None
    ) -> ExecResult:
        assert isinstance(params, SecretsParams)
        if (ran is None or ran.ok) and params.commits:
            try:
                await self._add_history(params, ctx)
            except ScanFailed as error:
                ctx.say(error.result.detail)
                return error.result
        return await super().finalize(params, ctx, ran)

    async def _add_history(self, params: SecretsParams, ctx: StepContext) -> None:
        """Adds the secrets of the range's commits to the raw findings `run` wrote."""
        raw_path = ctx.workspace / raw_findings_path(ctx.job_id)
        if not raw_path.exists():
            return  # the base class says the raw findings are missing
        tool = require_tool(ctx, TOOL, params)
        commits, notes = await commit_range(ctx)
        added = await added_lines(ctx, commits)
        chosen = {key: lines for key, lines in added.items() if selected(key[1], params.paths)}
        version, hits = await scan_added(ctx, tool, chosen)
        raw = json.loads(raw_path.read_text())
        known = {finding["fingerprint"] for finding in raw["findings"]}
        fresh = [f for f in findings_of(hits, ctx.workspace) if f.fingerprint not in known]
        raw["findings"].extend(asdict(finding) for finding in fresh)
        raw["files_scanned"] += len(chosen)
        raw["notes"] = [*raw.get("notes", []), *notes]
        if version:
            raw["tools"][TOOL] = version
        raw_path.write_text(json.dumps(raw, indent=1))
        for note in notes:
            ctx.say(f"{self.name}: {note}")
        ctx.say(
            f"{self.name}: {_count(len(commits), 'commit')}, "
            f"{_count(len(chosen), 'file')} of added lines scanned, "
            f"{_count(len(fresh), 'finding')} no longer in the tree"
        )


def findings_of(hits: list[Hit], root: Path) -> list[Finding]:
    """Findings for hits, one per (rule, path, secret): the earliest commit's is kept."""
    unique: dict[tuple[str, str, str], Hit] = {}
    for hit in hits:
        unique.setdefault((hit.rule, hit.path, hit.hashed), hit)
    kept = list(unique.values())
    findings = [
        Finding(
            tool=TOOL,
            rule_id=hit.rule,
            level=Level.ERROR,
            message=_message(hit),
            category=Category.SECRET,
            path=hit.path,
            start_line=hit.line,
            properties={"commit": hit.commit} if hit.commit else {},
        )
        for hit in kept
    ]
    hashes = {index: hit.hashed for index, hit in enumerate(kept)}
    return assign_fingerprints(findings, SourceLines(root), line_texts=hashes)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _message(hit: Hit) -> str:
    where = f" in {hit.commit[:12]}" if hit.commit else ""
    message = f"possible {hit.rule} committed{where}"
    if looks_like_test_code(hit.path):
        message += f"; a test fixture's fake value? end its line with `{ALLOWLIST_PRAGMA}`"
    return message


def looks_like_test_code(path: str) -> bool:
    """Tests and their fixtures, by the names pytest and unittest projects give them."""
    parts = path.split("/")
    name = parts[-1]
    return (
        any(part in TEST_FOLDERS for part in parts[:-1])
        or name == "conftest.py"
        or name.startswith("test_")
        or name.removesuffix(".py").endswith("_test")
    )


def selected(path: str, patterns: list[str]) -> bool:
    """`.` selects everything, a folder everything under it, anything else is a glob."""
    for pattern in patterns:
        base = pattern.rstrip("/")
        if base in (".", "") or path == base or path.startswith(base + "/"):
            return True
    return match_any(path, patterns)


def excluded(path: str) -> bool:
    return (
        path.startswith(f"{RAW_DIR}/")
        or ".git" in path.split("/")
        or path in POLICY_FILES  # fingerprints: hex digests, which look like keys
    )


async def workspace_files(ctx: StepContext) -> list[str]:
    listing = await checked(
        ctx, ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    )
    names = sorted({name for name in listing.split("\0") if name and not excluded(name)})
    return [
        n for n in names if (ctx.workspace / n).is_file() and not (ctx.workspace / n).is_symlink()
    ]


async def detect(
    ctx: StepContext, tool: ResolvedTool, root: Path, files: list[str]
) -> tuple[str, list[Hit]]:
    """detect-secrets over `files` (relative to `root`): its version and its results."""
    version, hits = "", []
    for start in range(0, len(files), BATCH):
        batch = files[start : start + BATCH]
        output = await checked(ctx, [*tool.argv, "scan", "--no-verify", "--", *batch], cwd=root)
        try:
            document = json.loads(output)
            version = str(document.get("version", ""))
            hits.extend(_hits(document["results"]))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ScanFailed(
                failed(
                    f"{TOOL} printed something that is not a baseline "
                    f"({type(error).__name__}: {error})"
                )
            ) from None
    return version or "unknown", hits


def _hits(results: dict[str, list[dict[str, Any]]]) -> list[Hit]:
    return [
        Hit(
            rule=str(item["type"]),
            path=path,
            line=int(item["line_number"]),
            hashed=str(item["hashed_secret"]),
        )
        for path, items in results.items()
        for item in items
    ]


async def commit_range(ctx: StepContext) -> tuple[list[str], list[str]]:
    """The commits the run brings in, oldest first, and notes on how they were chosen."""
    since = ctx.env.get(PREVIOUS_SHA_ENV, "").strip()
    if since:
        # Merges are left out: their lines come from the merged commits, listed too.
        argv = ["git", "rev-list", "--reverse", "--no-merges", f"{since}..HEAD"]
        listed = await run_quietly(ctx, argv)
        if listed.result.ok:
            return listed.stdout.split(), []
        note = f"{PREVIOUS_SHA_ENV}={since[:12]} is not in this repository; scanned HEAD only"
        return await _head(ctx), [note]
    return await _head(ctx), []


async def _head(ctx: StepContext) -> list[str]:
    return [(await checked(ctx, ["git", "rev-parse", "HEAD"])).strip()]


AddedLines = dict[tuple[str, str], dict[int, str]]  # (commit, path) -> line number -> text


async def added_lines(ctx: StepContext, commits: list[str]) -> AddedLines:
    """The lines each commit added; a merge (HEAD alone) counts what it brings to its
    first parent."""
    if not commits:
        return {}
    log = await checked(
        ctx,
        [
            "git",
            "-c",
            "core.quotePath=false",
            "log",
            "--no-walk=unsorted",
            f"--format=format:{_COMMIT_MARK}%H",
            "--patch",
            "--unified=0",
            "--find-renames",
            "--diff-merges=first-parent",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            *commits,
        ],
    )
    return parse_added_lines(log)


def parse_added_lines(log: str) -> AddedLines:
    """Added lines by (commit, path) from `git log --patch --unified=0` output."""
    added: AddedLines = {}
    commit, path, number, in_hunk = "", None, 0, False
    for line in log.split("\n"):
        if line.startswith(_COMMIT_MARK):
            commit, path, in_hunk = line[1:].strip(), None, False
        elif line.startswith("diff --git ") or line.startswith("diff --cc "):
            path, in_hunk = None, False
        elif (hunk := _HUNK.match(line)) is not None:
            number, in_hunk = int(hunk.group(1)), True
        elif in_hunk:
            if line.startswith("+"):
                if path is not None:
                    added.setdefault((commit, path), {})[number] = line[1:]
                number += 1
        elif line.startswith("+++ "):
            path = _new_path(line[4:])
    return {key: lines for key, lines in added.items() if not excluded(key[1])}


def _new_path(raw: str) -> str | None:
    raw = _unquote(raw.rstrip("\t"))
    return raw[2:] if raw.startswith("b/") else None  # "/dev/null": the file was deleted


def _unquote(raw: str) -> str:
    """git quotes paths with control characters, quotes or backslashes, C-style."""
    if len(raw) < 2 or not (raw.startswith('"') and raw.endswith('"')):
        return raw

    def one(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        return bytes([int(code, 8) if len(code) == 3 else _ESCAPES.get(code, code[0])])

    return _C_ESCAPE.sub(one, raw[1:-1].encode()).decode("utf-8", errors="replace")


async def scan_added(
    ctx: StepContext, tool: ResolvedTool, added: AddedLines
) -> tuple[str, list[Hit]]:
    """detect-secrets over scratch files holding each commit's added lines in place."""
    if not added:
        return "", []
    scratch = ctx.workspace / Path(raw_findings_path(ctx.job_id)).parent / "history"
    shutil.rmtree(scratch, ignore_errors=True)
    order = {commit: index for index, commit in enumerate(dict.fromkeys(c for c, _ in added))}
    try:
        files = [
            _write_sparse(scratch, f"{order[commit]}/{path}", lines)
            for (commit, path), lines in added.items()
        ]
        version, hits = await detect(ctx, tool, scratch, files)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    by_folder = {str(index): commit for commit, index in order.items()}
    found = [_from_scratch(hit, by_folder) for hit in hits]
    # Oldest commit first, so a secret added twice is reported where it first came in.
    return version, sorted(found, key=lambda hit: (order[hit.commit or ""], hit.path, hit.line))


def _write_sparse(root: Path, relative: str, lines: dict[int, str]) -> str:
    """A file with the added lines at their line numbers and blank lines between."""
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines.get(number, "") for number in range(1, max(lines) + 1))
    target.write_text(text + "\n", encoding="utf-8")
    return relative


def _from_scratch(hit: Hit, by_folder: dict[str, str]) -> Hit:
    folder, _, path = hit.path.partition("/")
    return Hit(hit.rule, path, hit.line, hit.hashed, commit=by_folder[folder])


@dataclass(frozen=True)
class Captured:
    result: ExecResult
    stdout: str
    stderr_tail: list[str]


class _CaptureSink:
    """Keeps stdout (JSON, file lists, diffs) out of the job's log; passes stderr on."""

    def __init__(self, log: LogSink) -> None:
        self.log = log
        self.stdout: list[str] = []
        self.stderr: deque[str] = deque(maxlen=5)

    def write(self, stream: Stream, line: str) -> None:
        if stream is Stream.STDOUT:
            self.stdout.append(line)
            return
        if stream is Stream.STDERR:
            self.stderr.append(line)
        self.log.write(stream, line)


async def run_quietly(ctx: StepContext, argv: list[str], *, cwd: Path | None = None) -> Captured:
    sink = _CaptureSink(ctx.log)
    request = ExecRequest(
        argv=argv, cwd=cwd or ctx.workspace, env=dict(ctx.env), timeout=ctx.timeout
    )
    result = await ctx.executor.execute(request, sink)
    return Captured(result, "\n".join(sink.stdout), list(sink.stderr))


async def checked(ctx: StepContext, argv: list[str], *, cwd: Path | None = None) -> str:
    """The command's stdout; ScanFailed, with its last stderr lines, when it failed."""
    captured = await run_quietly(ctx, argv, cwd=cwd)
    if captured.result.ok:
        return captured.stdout
    how = captured.result.detail or f"exit {captured.result.exit_code}"
    tail = " | ".join(captured.stderr_tail) or "no output"
    raise ScanFailed(
        failed(
            f"{' '.join(argv[:2])} failed ({how}): {tail}",
            exit_code=captured.result.exit_code,
            failure=captured.result.failure or FailureClass.EXIT_CODE,
        )
    )
