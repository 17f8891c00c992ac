"""The content-addressed job cache: what forms a job's key, and why a key missed.

The key is a digest of named components: the step and its version, the command, the
declared (non-secret) environment, the digests of the declared inputs, the digests of
the upstream jobs' outputs and the declared tools' versions. The components are stored
with each entry so a miss can say which of them changed, down to the input file.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.store.blobs import BlobStore
from conveyor.store.records import CacheEntry


@dataclass(frozen=True)
class CacheKey:
    digest: str
    components: dict[str, Any]


def compute_key(
    *,
    step: str,
    command: str,
    env: Mapping[str, str],
    inputs_manifest: str,
    inputs_digest: str,
    upstream: Mapping[str, str | None],
    tools: Mapping[str, str],
    outputs: list[str] | None = None,
) -> CacheKey:
    components: dict[str, Any] = {
        "step": step,
        "command": _sha(command),
        "env": dict(sorted(env.items())),
        "inputs": inputs_digest,
        "upstream": dict(sorted(upstream.items())),
        "tools": dict(sorted(tools.items())),
        "outputs": sorted(outputs or []),
    }
    digest = _sha(json.dumps(components, sort_keys=True, separators=(",", ":")))
    # Where to find the per-file digests for explaining a miss; not part of the key.
    components["inputs_manifest"] = inputs_manifest
    return CacheKey(digest=digest, components=components)


def manifest_bytes(manifest: Mapping[str, str]) -> bytes:
    return json.dumps(dict(manifest), sort_keys=True, separators=(",", ":")).encode()


def explain_miss(
    key: CacheKey,
    previous: CacheEntry | None,
    blobs: BlobStore,
    *,
    branch: str | None = None,
    previous_branch: str | None = None,
) -> str:
    """One line saying why `key` is not in the cache, compared with `previous` (this
    branch's last entry, or another branch's when this one has none), naming its run."""
    if previous is None:
        return "first run of this job: nothing cached yet"
    return f"{_changes(key, previous, blobs)} {_compared_with(previous, branch, previous_branch)}"


def _compared_with(previous: CacheEntry, branch: str | None, previous_branch: str | None) -> str:
    run = f"run {previous.run_id}" if previous.run_id is not None else "an earlier run"
    if previous_branch is None or previous_branch == branch:
        return f"(compared with {run})"
    first = f"first run of this job on {branch}; " if branch else ""
    return f"({first}compared with {run} on {previous_branch})"


def _changes(key: CacheKey, previous: CacheEntry, blobs: BlobStore) -> str:
    old, new = previous.components, key.components
    reasons: list[str] = []
    if old.get("step") != new["step"]:
        reasons.append(f"step changed ({old.get('step')} -> {new['step']})")
    if old.get("command") != new["command"]:
        reasons.append("command changed")
    if old.get("outputs", []) != new.get("outputs", []):
        reasons.append("declared outputs changed")
    reasons.extend(_dict_changes("env", old.get("env", {}), new["env"], show_values=True))
    reasons.extend(_dict_changes("tool", old.get("tools", {}), new["tools"], show_values=True))
    reasons.extend(_dict_changes("upstream outputs of", old.get("upstream", {}), new["upstream"]))
    if old.get("inputs") != new["inputs"]:
        reasons.append(_input_changes(old.get("inputs_manifest"), new["inputs_manifest"], blobs))
    if not reasons:
        return "key changed (cache format)"
    return "; ".join(reasons)


def _dict_changes(
    label: str, old: Mapping[str, Any], new: Mapping[str, Any], *, show_values: bool = False
) -> list[str]:
    changes: list[str] = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        if name not in old:
            changes.append(f"{label} '{name}' added")
        elif name not in new:
            changes.append(f"{label} '{name}' removed")
        elif show_values:
            changes.append(f"{label} '{name}' changed ({old[name]!r} -> {new[name]!r})")
        else:
            changes.append(f"{label} '{name}' changed")
    return changes


def _input_changes(old_digest: str | None, new_digest: str, blobs: BlobStore) -> str:
    if not old_digest or not blobs.has(old_digest) or not blobs.has(new_digest):
        return "inputs changed"
    old = json.loads(blobs.get_bytes(old_digest))
    new = json.loads(blobs.get_bytes(new_digest))
    changed = sorted(p for p in set(old) & set(new) if old[p] != new[p])
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    parts = [
        _listed("modified", changed),
        _listed("added", added),
        _listed("removed", removed),
    ]
    return "inputs changed: " + ", ".join(p for p in parts if p)


def _listed(verb: str, paths: list[str]) -> str:
    if not paths:
        return ""
    shown = ", ".join(paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return f"{shown}{more} {verb}"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class ToolVersions:
    """Each declared tool's `--version` output, asked once per run."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._known: dict[str, str] = {}

    def version(self, tool: str) -> str:
        if tool not in self._known:
            self._known[tool] = self._ask(tool)
        return self._known[tool]

    def _ask(self, tool: str) -> str:
        try:
            done = subprocess.run(
                [tool, "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                env=self._env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"unavailable: {error.__class__.__name__}"
        text = (done.stdout or done.stderr).strip().splitlines()
        return text[0] if text else f"exit {done.returncode}"
