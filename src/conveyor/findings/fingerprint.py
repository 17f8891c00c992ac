"""Content fingerprints: a finding's identity that survives edits elsewhere in the file.

The identity is the rule, the path and a hash of the flagged source line with its
whitespace normalised, plus the occurrence number of that same (rule, path, line text)
in the file, so two identical lines stay two findings. The line number is not part of it:
inserting lines above a finding does not change its fingerprint.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from conveyor.findings.model import Finding

FINGERPRINT_KEY = "conveyor/content/v1"
_SPACES = re.compile(r"\s+")


def normalise(line: str) -> str:
    return _SPACES.sub(" ", line).strip()


def fingerprint(rule_id: str, path: str | None, line_text: str, occurrence: int) -> str:
    material = "\x1f".join([rule_id, path or "", normalise(line_text), str(occurrence)])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


class SourceLines:
    """Reads each file once; gives the text of a line (empty when unreadable)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, list[str]] = {}

    def line(self, path: str | None, number: int | None) -> str:
        if path is None or number is None:
            return ""
        if path not in self._files:
            try:
                text = (self.root / path).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            self._files[path] = text.splitlines()
        lines = self._files[path]
        return lines[number - 1] if 0 < number <= len(lines) else ""


def assign_fingerprints(
    findings: Iterable[Finding],
    sources: SourceLines,
    *,
    line_texts: Mapping[int, str] | None = None,
) -> list[Finding]:
    """Fingerprint findings in file order; the occurrence counter disambiguates repeats.

    `line_texts` (by index into `findings`) overrides the source text, e.g. for secrets,
    where the hash of the secret itself is the stable content.
    """
    ordered = sorted(
        enumerate(findings), key=lambda item: (item[1].path or "", item[1].start_line or 0)
    )
    seen: Counter[tuple[str, str | None, str]] = Counter()
    result: dict[int, Finding] = {}
    for index, finding in ordered:
        text = (line_texts or {}).get(index)
        if text is None:
            text = sources.line(finding.path, finding.start_line)
        identity = (finding.rule_id, finding.path, normalise(text))
        occurrence = seen[identity]
        seen[identity] += 1
        result[index] = replace(
            finding, fingerprint=fingerprint(finding.rule_id, finding.path, text, occurrence)
        )
    return [result[index] for index in range(len(result))]
