"""Offline vulnerability scan: 100 real packages against the PyPA advisory database.

The data is the PyPA advisory database (pypa/advisory-database, CC-BY 4.0), 2,661 OSV
advisories, checked in with its licence in tests/data/osv/ (or `--data`). The script times the
import, the index build, and then the scan of 100 packages with the index built (the goal:
<= 0.5 s). When pip-audit is installed next to this Python, it also runs pip-audit side by
side against a local OSV-compatible endpoint (127.0.0.1) serving the same advisories, on a
requirements file of the same 100 packages, and compares whole commands and findings.

    .venv/bin/python bench/osv_scan.py --repeat 5
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from common import (
    PYTHON,
    Figure,
    Samples,
    alternate,
    console,
    header,
    print_figures,
    print_samples,
    repeat_parser,
)
from conveyor.supply.osv.db import VulnDB
from conveyor.supply.osv.match import MatchIndex
from conveyor.supply.osv.scan import scan_packages
from conveyor.supply.osv.versions import normalize_name

TARBALL = "pypa-advisory-database-2024-10-10.tar.gz"
GOAL_SECONDS = 0.5
SCANS_PER_ROUND = 10  # in-process scans per round: each takes milliseconds
IN_DB = 80  # packages taken from the advisories; the rest have none
# Popular packages the data has no advisory for, at real releases.
CLEAN = {
    "rich": "13.7.1", "typer": "0.12.3", "click": "8.1.7", "attrs": "23.2.0",
    "pluggy": "1.5.0", "iniconfig": "2.0.0", "packaging": "24.0", "six": "1.16.0",
    "python-dateutil": "2.9.0", "pytz": "2024.1", "tzdata": "2024.1", "colorama": "0.4.6",
    "charset-normalizer": "3.3.2", "markupsafe": "2.1.5", "itsdangerous": "2.2.0",
    "sniffio": "1.3.1", "anyio": "4.4.0", "httpcore": "1.0.5", "wcwidth": "0.2.13",
    "pygments": "2.18.0", "idna-ssl": "1.1.0", "more-itertools": "10.3.0",
}  # fmt: skip
SCAN_SCRIPT = """
import json, sys
from pathlib import Path
from conveyor.supply.osv.db import VulnDB
from conveyor.supply.osv.scan import report_json, scan_packages, to_findings
pairs = [tuple(line.split("==")) for line in Path(sys.argv[2]).read_text().split()]
with VulnDB(Path(sys.argv[1])) as db:
    found = to_findings(scan_packages(db, pairs), source=sys.argv[2])
    print(json.dumps(report_json(found, db.status())))
"""


def find_tarball(explicit: str | None) -> Path:
    checked_in = Path(__file__).resolve().parents[1] / "tests" / "data" / "osv" / TARBALL
    candidate = Path(explicit or os.environ.get("CONVEYOR_OSV_DATA") or checked_in)
    if not candidate.is_file():
        raise SystemExit(f"advisory tarball not found: {candidate}")
    return candidate


def unpack_advisories(tarball: Path, target: Path) -> None:
    """Folders and regular files only, which is all the advisory data holds. Member by
    member: tarfile's `filter=` is missing on Python 3.11.2, the oldest Python supported."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if member.name.startswith("/") or ".." in parts:
                raise SystemExit(f"{tarball} holds an unsafe path {member.name!r}")
            path = target.joinpath(*parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif member.isfile() and (source := archive.extractfile(member)) is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(source.read())


def load_raw(folder: Path) -> dict[str, dict[str, Any]]:
    """The advisories as OSV JSON objects, by id: what the local endpoint serves."""
    loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
    documents = (yaml.load(f.read_text(), Loader=loader) for f in folder.rglob("*.yaml"))
    return {doc["id"]: doc for doc in documents}


def _versions(text_versions: list[str]) -> list[Version]:
    parsed = []
    for text in text_versions:
        try:
            parsed.append(Version(text))
        except InvalidVersion:
            continue
    return sorted(set(parsed))


def pick_packages(raw: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """100 packages: the 80 with most advisories, alternately at an old release (a third of
    the way through the versions the data lists) and at the highest fixed release, plus
    popular packages with no advisory."""
    listed: dict[str, list[str]] = defaultdict(list)
    fixed: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for doc in raw.values():
        for entry in doc.get("affected", []):
            name = normalize_name(entry["package"]["name"])
            counts[name] += 1
            listed[name] += entry.get("versions", [])
            for version_range in entry.get("ranges", []):
                if version_range["type"] == "ECOSYSTEM":
                    fixed[name] += [e["fixed"] for e in version_range["events"] if "fixed" in e]
    chosen: list[tuple[str, str]] = []
    for position, name in enumerate(sorted(counts, key=lambda n: (-counts[n], n))):
        old, new = _versions(listed[name]), _versions(fixed[name])
        releases = new or old
        if position % 2 == 0 and old:
            chosen.append((name, str(old[len(old) // 3])))
        elif releases:
            chosen.append((name, str(releases[-1])))
        if len(chosen) == IN_DB:
            break
    chosen += [(name, version) for name, version in CLEAN.items() if name not in counts]
    return chosen[:100]


@dataclass
class Prepared:
    folder: Path
    db_dir: Path
    requirements: Path
    packages: list[tuple[str, str]]
    raw: dict[str, dict[str, Any]]
    import_seconds: float
    index_seconds: float
    index: MatchIndex


def prepare(tarball: Path, scratch: Path) -> Prepared:
    unpack_advisories(tarball, scratch)
    folder = scratch / "vulns"
    db_dir = scratch / "osv-db"
    with VulnDB(db_dir) as db:
        started = time.perf_counter()
        report = db.import_path(folder)
        import_seconds = time.perf_counter() - started
        started = time.perf_counter()
        index = db.index()
        index_seconds = time.perf_counter() - started
    console.print(
        f"imported {report.imported} advisories ({report.withdrawn} withdrawn, "
        f"{report.skipped_unparsable_version} skipped: unparsable version), "
        f"{index.packages} packages, digest {report.db_digest[:19]}…"
    )
    raw = load_raw(folder)
    packages = pick_packages(raw)
    requirements = scratch / "requirements.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in packages))
    return Prepared(
        folder, db_dir, requirements, packages, raw, import_seconds, index_seconds, index
    )


def scan_in_process(index: MatchIndex, packages: list[tuple[str, str]]) -> float:
    started = time.perf_counter()
    for _ in range(SCANS_PER_ROUND):
        scan_packages(index, packages)
    return (time.perf_counter() - started) / SCANS_PER_ROUND


class OsvHandler(BaseHTTPRequestHandler):
    """POST /v1/query, POST /v1/querybatch, GET /v1/vulns/{id}: the OSV API's shapes."""

    index: MatchIndex
    raw: dict[str, dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        if self.path == "/v1/query":
            vulns = self._query(body)
            self._send(200, {"vulns": vulns} if vulns else {})
        elif self.path == "/v1/querybatch":
            results = [
                {"vulns": [{"id": v["id"], "modified": v["modified"]} for v in self._query(q)]}
                for q in body.get("queries", [])
            ]
            self._send(200, {"results": results})
        else:
            self._send(404, {"message": "not found"})

    def do_GET(self) -> None:
        match = re.fullmatch(r"/v1/vulns/([^/]+)", self.path)
        doc = self.raw.get(match.group(1)) if match else None
        self._send(200 if doc else 404, doc or {"message": "not found"})

    def _query(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        package = body.get("package", {})
        matches = self.index.matches(package.get("name", ""), body.get("version", ""))
        return [self.raw[m.advisory.id] for m in matches]

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def osv_endpoint(index: MatchIndex, raw: dict[str, dict[str, Any]]) -> Iterator[str]:
    handler = type("Handler", (OsvHandler,), {"index": index, "raw": raw})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def run_timed(argv: list[str], ok: tuple[int, ...] = (0,)) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode not in ok:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr[-2000:]}")
    return took, done.stdout


def pip_audit_binary() -> Path | None:
    candidate = Path(sys.executable).parent / "pip-audit"
    return candidate if candidate.is_file() else None


def pip_audit_argv(binary: Path, prepared: Prepared, url: str, scratch: Path) -> list[str]:
    return [
        str(binary), "-r", str(prepared.requirements), "--no-deps", "--disable-pip",
        "--vulnerability-service", "osv", "--osv-url", f"{url}/v1/query",
        "--cache-dir", str(scratch / "pip-audit-cache"), "--progress-spinner", "off",
        "--format", "json",
    ]  # fmt: skip


def pairs_from_pip_audit(stdout: str) -> set[tuple[str, str]]:
    report = json.loads(stdout)
    return {
        (normalize_name(dep["name"]), vuln["id"])
        for dep in report.get("dependencies", [])
        for vuln in dep.get("vulns", [])
    }


def pairs_from_conveyor(stdout: str) -> set[tuple[str, str]]:
    return {(v["package"], v["id"]) for v in json.loads(stdout)["vulnerabilities"]}


def side_by_side(prepared: Prepared, repeat: int, scratch: Path) -> list[Figure]:
    binary = pip_audit_binary()
    conveyor = [PYTHON, "-c", SCAN_SCRIPT, str(prepared.db_dir), str(prepared.requirements)]
    if binary is None:
        console.print("pip-audit is not installed next to this Python: Conveyor's figures only")
        return []
    with osv_endpoint(prepared.index, prepared.raw) as url:
        audit = pip_audit_argv(binary, prepared, url, scratch)
        _, audit_out = run_timed(audit, ok=(0, 1))  # 1: vulnerabilities found
        _, conveyor_out = run_timed(conveyor)
        theirs, ours = pairs_from_pip_audit(audit_out), pairs_from_conveyor(conveyor_out)
        console.print(
            f"findings: conveyor {len(ours)}, pip-audit {len(theirs)}, in both {len(ours & theirs)}"
        )
        samples = alternate(
            {
                "conveyor scan (whole process)": lambda: run_timed(conveyor)[0],
                "pip-audit, local OSV endpoint": lambda: run_timed(audit, ok=(0, 1))[0],
            },
            repeat,
        )
    ours_s = samples["conveyor scan (whole process)"]
    theirs_s = samples["pip-audit, local OSV endpoint"]
    print_samples("100 packages, whole commands", [ours_s, theirs_s], ours_s)
    return [
        Figure("conveyor scan, whole process", ours_s.median, "s"),
        Figure("pip-audit, whole process", theirs_s.median, "s"),
        Figure("pip-audit / conveyor", theirs_s.median / ours_s.median, "x"),
    ]


def measure(repeat: int, data: str | None = None) -> list[Figure]:
    header("offline vulnerability scan: 100 packages, 2,661 PyPA advisories")
    with tempfile.TemporaryDirectory(prefix="bench-osv-") as scratch_name:
        scratch = Path(scratch_name)
        prepared = prepare(find_tarball(data), scratch)
        started = time.perf_counter()
        found = scan_packages(prepared.index, prepared.packages)  # parses these packages' ranges
        first_seconds = time.perf_counter() - started
        affected = len({v.package for v in found})
        console.print(
            f"{len(prepared.packages)} packages: {len(found)} vulnerabilities in {affected} of them"
        )
        scans = Samples("scan 100 packages, index built")
        for _ in range(repeat):
            scans.seconds.append(scan_in_process(prepared.index, prepared.packages))
        print_samples(f"in process, mean of {SCANS_PER_ROUND} scans per round", [scans], None)
        figures = [
            Figure("scan 100 packages (index built)", scans.median, "s", GOAL_SECONDS),
            Figure("first scan (ranges parsed on the way)", first_seconds, "s", GOAL_SECONDS),
            Figure("import 2,661 advisories", prepared.import_seconds, "s"),
            Figure("build the match index", prepared.index_seconds, "s"),
        ]
        figures += side_by_side(prepared, repeat, scratch)
    print_figures("osv scan", figures)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = repeat_parser(__doc__ or "")
    parser.add_argument("--data", help=f"the advisory tarball ({TARBALL})")
    args = parser.parse_args(argv)
    measure(args.repeat, args.data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
