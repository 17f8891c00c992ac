"""The demo: the sample service, copied into a fresh git repository, through its pipeline.

The whole loop: commits stopped at the gates and fixed, images built, scanned and signed,
staging verified (E2E, load, DAST), production approved by a reviewer (the author's own
approval refused), canary releases judged, a regression rolled back by the canary's judge,
and a defect that shows only under production's full traffic rolled back by its SLO alert
after promotion, with its incident and follow-up requirement (service/demo_loop.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from conveyor.deploy.progress import load_progress
from conveyor.engine.report import Reporter
from conveyor.errors import ConveyorError
from conveyor.service.demo_loop import (
    DemoWatch,
    Experiment,
    LoopOutcome,
    close_the_loop,
    every_consumer_but_the_slo,
    experiment_figures,
    start_experiment,
)
from conveyor.service.demo_payments import payments_chapters
from conveyor.service.demo_people import Reviewer, enrol
from conveyor.service.demo_server import (
    DEMO_PID_DIR,
    FLAGS_PORT,
    flags_port,
    start_flag_server,
)
from conveyor.service.project import Project
from conveyor.service.runs import RunOptions, RunOutcome, execute_run
from conveyor.service.traffic import SyntheticUsers
from conveyor.states import RunState

_IGNORED = shutil.ignore_patterns(
    ".venv",
    "__pycache__",
    "*.pyc",
    "shop.db",
    ".conveyor",
    "dist",
    "reports",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    "demo-changes",  # the commits the story adds later, not part of the first one
    "fixtures",  # test-only overlays (a planted injection), never part of the shop
)
CHANGES_DIR = "demo-changes"
LOOP_CHAPTER = 9  # the chapter after which production's watch must catch the defect
BREAKING_CHAPTER = 13  # the payments change can-i-deploy must refuse
DEMO_AUTHOR = ("Dana Developer", "dana@example.com")


@dataclass(frozen=True)
class DemoResult:
    repository: Path
    chapters: list[Chapter]
    urls: dict[str, str] = field(default_factory=dict)  # environment -> its router's URL
    refusals: list[str] = field(default_factory=list)  # approvals refused (self-approval)
    approvals: list[str] = field(default_factory=list)  # approvals that opened the gate
    loop: LoopOutcome | None = None  # what production taught after the last promotion
    contract_refusal: list[str] = field(default_factory=list)  # can-i-deploy's, chapter 13
    addressed: list[str] = field(default_factory=list)  # requirements chapter 10 addressed
    experiment: Experiment | None = None  # its figures while chapter 7's release was live

    @property
    def as_expected(self) -> bool:
        chapters = bool(self.chapters) and all(c.as_expected for c in self.chapters)
        return chapters and (
            len(self.chapters) < LOOP_CHAPTER or bool(self.loop and self.loop.closed)
        )


def find_sample(explicit: Path | None = None) -> Path:
    candidates = [explicit] if explicit else []
    candidates.append(Path(__file__).resolve().parents[3] / "examples" / "shop")
    for candidate in candidates:
        if candidate is not None and (candidate / "conveyor.yml").is_file():
            return candidate
    raise ConveyorError(
        "cannot find the sample service (examples/shop)",
        hint="run the demo from a Conveyor source checkout, or pass --sample PATH",
    )


def make_repository(
    sample: Path,
    destination: Path | None = None,
    message: str = "Shop: first version",
    *,
    flags_port: int = FLAGS_PORT,
) -> Path:
    """Copy the sample into a new git repository with one commit on `main`; its
    conveyor.yml names the flag server's `flags_port` (FLAGS_PORT unless it was taken)."""
    target = destination or Path(tempfile.mkdtemp(prefix="conveyor-demo-")) / "shop"
    shutil.copytree(sample, target, ignore=_IGNORED)
    if flags_port != FLAGS_PORT:
        spec = target / "conveyor.yml"
        ours = f"http://127.0.0.1:{flags_port}"
        spec.write_text(spec.read_text().replace(f"http://127.0.0.1:{FLAGS_PORT}", ours))
    _git(target, "init", "-q", "-b", "main")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", message)
    return target


def _git(repository: Path, *args: str) -> None:
    name, email = DEMO_AUTHOR
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    done = subprocess.run(
        ["git", *args], cwd=repository, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise ConveyorError(f"git {' '.join(args)} failed: {done.stderr.strip()}")


def demo_env() -> dict[str, str]:
    """Jobs find this interpreter's tools (python, pytest, ruff) first on PATH, and pip
    installs image dependencies from the wheelhouse `make demo` filled: no network."""
    bin_dir = Path(sys.executable).parent
    env = {"PATH": str(bin_dir) + os.pathsep + os.environ.get("PATH", "")}
    wheelhouse = bin_dir.parent / "wheelhouse"
    if wheelhouse.is_dir():
        env |= {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)}
    return env


@dataclass(frozen=True)
class Chapter:
    """One step of the story: what happens, what must come of it."""

    title: str
    outcome: RunOutcome
    expected: RunState

    @property
    def as_expected(self) -> bool:
        return self.outcome.state is self.expected


def run_demo(
    reporter: Reporter,
    announce: Callable[[str], None],
    *,
    sample: Path | None = None,
    destination: Path | None = None,
    explain: Callable[[Project, RunOutcome], None] | None = None,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """The story so far: a green first commit deployed to staging and production, a cached
    rerun, bad changes stopped at the gates, their fixes, the fixed feature merged and
    released to production by canary, and a slow change rolled back by the judge."""
    sample_dir = find_sample(sample)
    port = flags_port(DEMO_PID_DIR)
    repository = make_repository(sample_dir, destination, flags_port=port)
    project = Project.locate(repository / "conveyor.yml")
    prepare_supply_chain(project, sample_dir)
    start_flag_server(project, DEMO_PID_DIR, port)  # production's replicas ask it
    reviewer = Reviewer(project, enrol(project), say).start()
    options = RunOptions(spec=project.spec_path, actor="demo", extra_env=demo_env())
    chapters: list[Chapter] = []

    users: SyntheticUsers | None = None
    loop: list[LoopOutcome] = []

    refusal: list[str] = []
    addressed: list[str] = []
    experiment: list[Experiment] = []

    def chapter(title: str, expected: RunState, on: Project = project) -> Chapter:
        announce(title)
        run_options = replace(options, spec=on.spec_path)
        done = Chapter(title, execute_run(on, run_options, reporter), expected)
        if users is not None:
            users.pause()  # back at the next production deploy (see below)
        chapters.append(done)
        if explain is not None:
            explain(on, done.outcome)
        return done

    first = chapter(
        f"1. the shop's first commit on main, in {repository}: built, deployed to staging, "
        "verified there (E2E, load, DAST), approved by a reviewer, deployed to production",
        RunState.SUCCESS,
    )
    try:
        if first.as_expected:
            # Production's users: they browse while a release goes to production (from the
            # approval on), so the canaries of chapters 7 to 9 are judged on their
            # requests; between releases they rest, so that staging's load tests do not
            # share the 2 cores with them. Half of them get the one-page checkout, and
            # the watch records what they buy and say, per release and per variant.
            start_experiment(project)
            users = SyntheticUsers(_urls(project)["production"]).start(paused=True)
            reviewer.on_approved = users.resume
            watch = DemoWatch(project, every_consumer_but_the_slo()).start()
            try:
                last = _the_rest(repository, sample_dir, chapter)
                watch.stop()
                if last.as_expected:
                    loop.append(close_the_loop(project, users.resume, say, _commit_file))
                    users.pause()
                    experiment.append(experiment_figures(project))
                addressed = _the_fix(repository, sample_dir, project, chapter)
                refusal = payments_chapters(
                    project,
                    sample_dir,
                    chapter,
                    make_repository=make_repository,
                    apply=_apply,
                    commit=_commit_all,
                )
            finally:
                watch.stop()
                users.stop()
    finally:
        reviewer.stop()
    return DemoResult(
        repository=repository,
        chapters=chapters,
        urls=_urls(project),
        refusals=reviewer.refusals,
        approvals=reviewer.approvals,
        loop=loop[0] if loop else None,
        contract_refusal=refusal,
        addressed=addressed,
        experiment=experiment[0] if experiment else None,
    )


def _the_rest(
    repository: Path, sample_dir: Path, chapter: Callable[[str, RunState], Chapter]
) -> Chapter:
    changes = sample_dir / CHANGES_DIR
    chapter(
        "2. the same commit again: the build comes from the cache; staging is verified again",
        RunState.SUCCESS,
    )
    _git(repository, "switch", "-q", "-c", "feature/search")
    _apply(changes / "1-search-feature", repository, "Add product search")
    chapter(
        "3. a change with a SQL injection and a committed key: the gates stop it", RunState.FAILED
    )
    _apply(changes / "2-fix", repository, "Search: parameterised query, key from the environment")
    chapter("4. the fix: the gates pass, the image is built, scanned and signed", RunState.SUCCESS)
    _apply(changes / "3-vulnerable-dependency", repository, "Payments: add urllib3")
    chapter("5. a dependency with a known vulnerability: the image scan stops it", RunState.FAILED)
    _apply(changes / "4-dependency-fix", repository, "Payments: urllib3 2.2.3")
    chapter("6. the fixed dependency: scanned clean, signed, pushed", RunState.SUCCESS)
    _git(repository, "switch", "-q", "main")
    # Squashed: the key committed (then removed) on the branch stays out of main's history.
    _git(repository, "merge", "-q", "--squash", "feature/search")
    _git(repository, "commit", "-q", "-m", "Product search and payments (squashed)")
    chapter(
        "7. squash-merged to main: staging verified, the author's own approval refused, a "
        "reviewer's accepted, then a canary in production, judged and promoted",
        RunState.SUCCESS,
    )
    _apply(changes / "5-slow-inventory", repository, "Products: fresh stock levels")
    chapter(
        "8. a change that adds 200 ms to every product list where a warehouse is configured "
        "(production only): staging passes, the production canary is rolled back",
        RunState.FAILED,
    )
    _apply(
        changes / "6-stock-cache",
        repository,
        "Products: stock levels from a pool of warehouse connections, not a call per list",
    )
    return chapter(
        "9. stock levels from a connection pool that leaks one connection per list "
        "(production only): the canary passes and is promoted; under all of production's "
        "traffic errors rise, the SLO's burn-rate alert rolls it back",
        RunState.SUCCESS,
    )


def _the_fix(
    repository: Path,
    sample_dir: Path,
    project: Project,
    chapter: Callable[[str, RunState], Chapter],
) -> list[str]:
    """Chapter 10: the follow-up requirement's fix, its commit naming it; the requirement
    is marked addressed by that commit. Returns "REQ-1 closed by <sha>" lines."""
    from conveyor.observe.requirements import link_commits

    _apply(
        sample_dir / CHANGES_DIR / "7-stock-cache-fix",
        repository,
        "Products: give each warehouse connection back after the list\n\nCloses REQ-1",
    )
    chapter(
        "10. the follow-up's fix (its commit says Closes REQ-1): connections given back; "
        "the canary passes, and this time production holds",
        RunState.SUCCESS,
    )
    with project.open_store() as store:
        linked = link_commits(project, store)
    return [
        f"{link.key} {'closed' if link.closed else 'addressed'} by {link.sha[:12]}"
        for link in linked
    ]


def regression_report(project: Project) -> dict[str, object]:
    """What the last production canary's judge found: time with traffic, requests served."""
    with project.open_store() as store:
        deploys = store.ledger.deploys.of_environment("production")
    if not deploys or deploys[-1].state.value != "rolled_back":
        return {}
    last = deploys[-1]
    progress = load_progress(last.progress)
    recorded = progress.to_json() if progress is not None else {}
    return {"release": last.release_id, "reason": last.reason, **recorded}


def _urls(project: Project) -> dict[str, str]:
    """Where each environment the demo deployed serves."""
    from conveyor.service.environments import list_environments

    with project.open_store() as store:
        return {view.name: view.url for view in list_environments(project, store) if view.url}


def prepare_supply_chain(project: Project, sample_dir: Path) -> None:
    """A signing key for the demo repository and an offline vulnerability database."""
    from conveyor.supply.keys import generate_keypair
    from conveyor.supply.osv.db import VulnDB

    project.ensure_state_dir()
    generate_keypair(project.state_dir / "keys", "conveyor")
    with VulnDB(project.state_dir / "vulndb") as db:
        db.import_path(sample_dir / CHANGES_DIR / "osv")


def _apply(change: Path, repository: Path, message: str) -> None:
    """Lay a folder of files over the repository and commit them."""
    shutil.copytree(change, repository, dirs_exist_ok=True)
    _commit_all(repository, message)


def _commit_file(path: Path, message: str) -> None:
    """Commit one file alone, as the demo's author."""
    _git(path.parent, "add", "--", path.name)
    _git(path.parent, "commit", "-q", "-m", message, "--only", "--", path.name)


def _commit_all(repository: Path, message: str) -> None:
    _git(repository, "add", "-A")
    _git(repository, "commit", "-q", "-m", message)
