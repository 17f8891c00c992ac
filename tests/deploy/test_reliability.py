"""Environments end to end under load, with real routers, runtimes and a killed controller.

Every test deploys through `conveyor.service.environments` (or the CLI) into a project of
its own, sends traffic through the environment's router while deploys, rollbacks and a
SIGKILL happen, and stops everything with `stop_environment` afterwards; the fixture then
checks that no process of the project is left (routers, supervisors, replicas, conmon).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import WAIT_SECONDS, CliProcess, kill_quietly, process_alive, run_cli, wait_until
from conveyor.deploy.rollout import RollbackOutcome, baseline_name, release_name
from conveyor.deploy.routers import builtin
from conveyor.deploy.routing import version_of
from conveyor.deploy.runtimes import supervisor
from conveyor.deploy.runtimes.podman import PodmanRuntime
from conveyor.deploy.runtimes.process import ProcessRuntime
from conveyor.service import environments
from conveyor.service.images import image_store
from conveyor.service.project import Project
from conveyor.states import DeployState, ReleaseState
from conveyor.store.store import Store
from conveyor.supply.oci.build import AppFiles, ImageSpec, build_image
from deploy.apps import REPOSITORY, build_app, make_project
from deploy.load import Load

pytestmark = [pytest.mark.real, pytest.mark.timeout(90)]

ENVIRONMENT = "staging"
START_DELAY = "3"  # seconds a slow-start replica waits before it listens
SLOW_READY_TIMEOUT = "10s"  # its deadline: enough to start, short enough to fail quickly
BUSYBOX = Path("/bin/busybox")
BUSYBOX_HTTPD = ("/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $HOST:$PORT -h /www")


# --- processes --------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    argv: list[str]
    cwd: str
    parent: int


def processes() -> list[Proc]:
    """Every live process but this one (zombies left to init are not alive)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid() or not process_alive(int(name)):
            continue
        with contextlib.suppress(OSError, ValueError):  # it ended while being read
            argv = Path(f"/proc/{name}/cmdline").read_bytes().decode(errors="replace")
            parent = Path(f"/proc/{name}/status").read_text().split("PPid:", 1)[1].split()[0]
            cwd = os.readlink(f"/proc/{name}/cwd")
            found.append(Proc(int(name), argv.split("\0"), cwd, int(parent)))
    return found


def supervisors_of(runtime: ProcessRuntime, release_id: str) -> list[int]:
    """Supervisor processes whose --release-dir is this release's run directory."""
    run_dir = str(runtime.runs / release_id)
    return [p.pid for p in processes() if supervisor.MODULE in p.argv and run_dir in p.argv]


def replicas_of(project: Project, release_id: str) -> list[int]:
    """Replica processes of this release: run from the project's unpacked images, with
    CONVEYOR_RELEASE naming the release (the supervisor has no such variable)."""
    wanted = f"CONVEYOR_RELEASE={release_id}".encode()
    mine = [p.pid for p in processes() if p.cwd.startswith(str(project.state_dir))]
    return [pid for pid in mine if wanted in _environ(pid)]


def _environ(pid: int) -> list[bytes]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return []


def read_router_pid(router_dir: Path) -> int:
    pid = builtin.read_pid(router_dir)
    assert pid is not None and process_alive(pid), f"no builtin router in {router_dir}"
    return pid


def leftovers(directory: Path) -> list[str]:
    """Processes that name `directory` in their command line or run inside it."""
    return [
        f"{p.pid}: {' '.join(p.argv)}"
        for p in processes()
        if str(directory) in " ".join(p.argv) or p.cwd.startswith(str(directory))
    ]


# --- environments -----------------------------------------------------------------------


@dataclass
class Staging:
    """The staging environment of one project, with its store open."""

    project: Project
    store: Store
    sources: Path  # where app sources are written before being built into images

    @property
    def url(self) -> str:
        record = self.store.ledger.environments.get(ENVIRONMENT)
        assert record is not None, "staging has never been deployed"
        return f"http://127.0.0.1:{record.port}"

    def build(self, version: str, behaviour: str = "ok") -> str:
        return build_app(self.project, self.sources, version, behaviour)

    def deployed(self, image: str) -> str:
        """Deploy `image`, which must succeed; its release id."""
        outcome = environments.deploy(self.project, self.store, ENVIRONMENT, image, actor="tester")
        assert outcome.state is DeployState.SUCCEEDED, outcome
        return outcome.release_id

    def rollback(self) -> RollbackOutcome:
        return environments.rollback(self.project, self.store, ENVIRONMENT, actor="tester")

    def versions(self, count: int = 20, headers: dict[str, str] | None = None) -> set[str]:
        """Who answered `count` new clients (no cookies kept): X-App-Version, else body."""
        seen = set()
        with httpx.Client(base_url=self.url, timeout=10.0, headers=headers) as client:
            for _ in range(count):
                response = client.get("/")
                assert response.status_code == 200, response.text
                seen.add(response.headers.get("X-App-Version") or response.text.strip())
                client.cookies.clear()
        return seen


OpenStaging = Callable[..., Staging]


@pytest.fixture
def open_staging(tmp_path: Path) -> Iterator[OpenStaging]:
    """`open_staging(replicas=, runtime=, router=, ready=, drain=, strategy=)` -> a Staging
    in a short folder under
    /tmp (HAProxy's socket path must stay under 108 bytes); at teardown its environment is
    stopped and no process or container of it may be left."""
    opened: list[tuple[Staging, Path]] = []

    def open_one(
        *,
        replicas: int,
        runtime: str = "process",
        router: str = "builtin",
        ready: str = "20s",
        drain: str = "0.2s",
        strategy: str = "",
    ) -> Staging:
        folder = Path(tempfile.mkdtemp(prefix="cvr-"))
        project = make_project(
            folder / "p",
            replicas=replicas,
            runtime=runtime,
            router=router,
            ready_timeout=ready,
            drain=drain,
            strategy=strategy,
        )
        staging = Staging(project, project.open_store(), tmp_path)
        opened.append((staging, folder))
        return staging

    yield open_one
    for staging, folder in opened:
        try:
            with staging.store:
                environments.stop_environment(staging.project, staging.store, ENVIRONMENT)
            assert remaining_after(folder, 10.0) == [], "processes outlived stop_environment"
            podman = podman_of(staging.project)
            assert podman is None or podman.releases() == [], "containers left in podman"
        finally:
            _remove(folder, staging.project)


def remaining_after(folder: Path, seconds: float) -> list[str]:
    """The processes of `folder` still there after up to `seconds` (stops are quick, but
    a daemon exits a little after it says it stops)."""
    deadline = time.monotonic() + seconds
    while (found := leftovers(folder)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _remove(folder: Path, project: Project) -> None:
    """Kill what is still there (the test has already failed), drop podman's storage.
    Rounds, because a supervisor may restart a replica between the listing and its kill."""
    for _ in range(50):
        found = [int(line.split(":", 1)[0]) for line in leftovers(folder)]
        if not found:
            break
        for pid in found:
            kill_quietly(pid)
        time.sleep(0.1)
    podman = podman_of(project)
    if podman is not None:
        env = {**os.environ, **podman.environment()}
        for argv in (["rm", "-af", "-t", "0"], ["rmi", "-af"]):
            subprocess.run(["podman", *argv], env=env, capture_output=True, check=False)
        shutil.rmtree(podman.runroot, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)


def podman_of(project: Project) -> PodmanRuntime | None:
    """The podman runtime of the project, if it ever used one."""
    podman_dir = project.state_dir / "runtime" / "podman"
    return PodmanRuntime(podman_dir, image_store(project)) if podman_dir.is_dir() else None


def with_start_delay(project: Project) -> None:
    """Give staging's replicas APP_START_DELAY: a slow-start release stays in flight."""
    text = project.spec_path.read_text()
    delayed = text.replace(
        "  staging:\n", f'  staging:\n    env: {{APP_START_DELAY: "{START_DELAY}"}}\n', 1
    )
    assert delayed != text
    project.spec_path.write_text(delayed)


# --- tests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowDeploy:
    """Staging with v1 live and a slow-starting v2 built: its deploy stays in flight."""

    staging: Staging
    v1: str  # release id
    image: str  # v2's image reference
    v2: str  # release id
    runtime: ProcessRuntime


def slow_deploy(open_staging: OpenStaging) -> SlowDeploy:
    staging = open_staging(replicas=2, ready=SLOW_READY_TIMEOUT)
    with_start_delay(staging.project)
    v1 = staging.deployed(staging.build("v1"))
    image = staging.build("v2", "slow-start")
    v2 = release_name(ENVIRONMENT, REPOSITORY, image.split("@", 1)[1])
    runtime = ProcessRuntime(staging.project.state_dir / "runtime", image_store(staging.project))
    return SlowDeploy(staging, v1, image, v2, runtime)


def wait_for_supervisor_launcher(control: CliProcess, run_dir: Path) -> None:
    """Until the controller runs `supervisor --detach` for `run_dir` (a ~100 ms window,
    hence the tight loop rather than wait_until)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not any(
        p.parent == control.pid and "--detach" in p.argv and str(run_dir) in p.argv
        for p in processes()
    ):
        if time.monotonic() > deadline or control.popen.poll() is not None:
            pytest.fail(f"the controller never launched a supervisor for {run_dir}")
        time.sleep(0.001)


def test_reconcile_finishes_a_deploy_whose_controller_was_killed_under_load(
    open_staging: OpenStaging, start_cli: Callable[..., CliProcess]
) -> None:
    setup = slow_deploy(open_staging)
    staging, v1, v2, runtime = setup.staging, setup.v1, setup.v2, setup.runtime
    slow = setup.image
    router_dir = environments.state_path(staging.project, ENVIRONMENT) / "router"

    with Load(staging.url) as load:
        control = start_cli(["deploy", ENVIRONMENT, slow], cwd=staging.project.directory)
        in_flight = wait_until(
            lambda: staging.store.ledger.deploys.of_environment(
                ENVIRONMENT, DeployState.IN_PROGRESS
            ),
            "the deploy of v2 in progress in the store",
        )
        wait_until(lambda: len(replicas_of(staging.project, v2)) == 2, "v2's replicas started")
        daemons = (read_router_pid(router_dir), supervisors_of(runtime, v2))
        os.kill(control.pid, signal.SIGKILL)  # the control process only: its daemons live on
        assert control.finish() == -signal.SIGKILL
        killed_at = time.monotonic()
        time.sleep(1.0)  # the load runs on, with no controller alive

        assert load.failures() == []
        assert load.versions_since(killed_at)  # the router still answers
        assert staging.store.ledger.deploys.get(in_flight[0].id).state is DeployState.IN_PROGRESS

        reconciled = run_cli(["env", "reconcile", ENVIRONMENT], cwd=staging.project.directory)
        reconciled_at = time.monotonic()
        time.sleep(0.5)  # the load runs on
        answers = load.stop()

    assert reconciled.exit_code == 0, reconciled.stdout + reconciled.stderr
    assert staging.store.ledger.deploys.get(in_flight[0].id).state is DeployState.SUCCEEDED
    record = staging.store.ledger.environments.get(ENVIRONMENT)
    assert record is not None
    assert (record.live_release, record.warm_release) == (v2, v1)
    assert staging.versions() == {"v2"}
    assert load.versions_since(reconciled_at) == {"v2"}
    assert (read_router_pid(router_dir), supervisors_of(runtime, v2)) == daemons
    assert [len(supervisors_of(runtime, r)) for r in (v1, v2)] == [1, 1]
    assert len(replicas_of(staging.project, v2)) == 2
    assert [a.failure for a in answers if a.failure] == []
    assert len(answers) > 100


def test_reconcile_starts_no_second_supervisor_after_a_kill_during_its_launch(
    open_staging: OpenStaging, start_cli: Callable[..., CliProcess]
) -> None:
    """Killed while `supervisor --detach` runs, the controller never writes supervisor.pid,
    but the launcher still starts the supervisor. Reconcile then starts a second one for
    the same ports: either both run (two supervisors, four replicas) or the second's
    replicas crash on ports in use and the resumed deploy fails; the orphan outlives
    `stop_environment` either way (the fixture's teardown reports it)."""
    setup = slow_deploy(open_staging)
    staging = setup.staging
    control = start_cli(["deploy", ENVIRONMENT, setup.image], cwd=staging.project.directory)
    wait_for_supervisor_launcher(control, setup.runtime.runs / setup.v2)
    os.kill(control.pid, signal.SIGKILL)
    assert control.finish() == -signal.SIGKILL

    reconciled = run_cli(["env", "reconcile", ENVIRONMENT], cwd=staging.project.directory)

    supervisors = supervisors_of(setup.runtime, setup.v2)
    replicas = replicas_of(staging.project, setup.v2)
    outcome = (reconciled.exit_code, len(supervisors), len(replicas))
    assert outcome == (0, 1, 2), reconciled.stdout + reconciled.stderr


def test_a_rolling_deploy_under_load_drops_no_request(open_staging: OpenStaging) -> None:
    staging = open_staging(replicas=2)
    staging.deployed(staging.build("v1"))

    with Load(staging.url) as load:
        staging.deployed(staging.build("v2"))
        deployed_at = time.monotonic()
        time.sleep(0.5)  # the load runs on
        answers = load.stop()

    assert [a.failure for a in answers if a.failure] == []
    assert {a.version for a in answers} == {"v1", "v2"}
    assert load.versions_since(deployed_at) == {"v2"}


def test_a_rollback_under_load_is_quick_and_drops_no_request(open_staging: OpenStaging) -> None:
    staging = open_staging(replicas=2)
    staging.deployed(staging.build("v1"))
    staging.deployed(staging.build("v2"))

    with Load(staging.url) as load:
        time.sleep(0.3)  # some requests reach v2 first
        outcome = staging.rollback()
        rolled_back_at = time.monotonic()
        time.sleep(0.5)  # the load runs on
        answers = load.stop()

    assert outcome.switch_seconds < 1.0
    assert [a.failure for a in answers if a.failure] == []
    assert "v2" in {a.version for a in answers if a.sent_at < rolled_back_at}
    assert load.versions_since(rolled_back_at) == {"v1"}
    assert staging.versions() == {"v1"}


def test_haproxy_router_pins_rolls_back_and_exports_metrics(open_staging: OpenStaging) -> None:
    staging = open_staging(replicas=2, router="haproxy")
    v1_image = staging.build("v1")
    v1 = staging.deployed(v1_image)
    v2 = staging.deployed(staging.build("v2"))
    pin = {"X-Conveyor-Version": version_of(v1_image.split("@", 1)[1])}

    assert staging.versions() == {"v2"}
    assert staging.versions(headers=pin) == {"v1"}

    outcome = staging.rollback()

    assert (outcome.from_release, outcome.to_release) == (v2, v1)
    assert staging.versions() == {"v1"}
    text = environments.metrics(staging.project, staging.store, ENVIRONMENT).decode()
    requests = {
        sample.labels["release"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "conveyor_release_requests_total"
    }
    assert set(requests) == {v1, v2}
    # the rolled-back requests; pinned ones (the 20 above, smoke) are a client's, never judged
    assert 20 <= requests[v1] < 40
    assert requests[v2] >= 20


def build_busybox_site(project: Project, sources: Path, version: str) -> str:
    """An image on no base for podman: a static busybox serving `version` at /, and ok at
    /healthz and /smoke (the readiness path and staging's smoke check)."""
    root = sources / f"site-{version}"
    (root / "bin").mkdir(parents=True)
    (root / "www").mkdir()
    shutil.copy(BUSYBOX, root / "bin" / "busybox")
    (root / "www" / "index.html").write_text(version)
    for page in ("healthz", "smoke"):
        (root / "www" / page).write_text("ok")
    spec = ImageSpec(app=AppFiles(root), workdir="/", entrypoint=BUSYBOX_HTTPD)
    built = build_image(spec, image_store(project), "site", (version,))
    return f"site@{built.manifest_digest}"


def test_podman_runtime_deploys_and_rolls_back(open_staging: OpenStaging) -> None:
    for tool in ("podman", "runc"):
        assert shutil.which(tool), f"{tool} is missing: apt-get install -y podman runc"
    assert BUSYBOX.is_file(), "/bin/busybox is missing: apt-get install -y busybox-static"
    staging = open_staging(replicas=1, runtime="podman")
    v1 = staging.deployed(build_busybox_site(staging.project, staging.sources, "v1"))
    assert staging.versions(5) == {"v1"}

    v2 = staging.deployed(build_busybox_site(staging.project, staging.sources, "v2"))
    assert staging.versions(5) == {"v2"}

    outcome = staging.rollback()

    assert (outcome.from_release, outcome.to_release) == (v2, v1)
    assert staging.versions(5) == {"v1"}


# --- nothing the ledger retired keeps running ---------------------------------------------

DRAIN = "2s"  # the window the controller is killed in: while it drains what it retired
CANARY_WITH_BASELINE = """\
      canary:
        baseline: true
        analysis: {interval: 0.3s, min_duration: 0.5s, max_duration: 20s}
        steps:
          - weight: 30
          - analysis: {}
"""


def running(staging: Staging) -> set[str]:
    return set(process_runtime(staging).releases())


def process_runtime(staging: Staging) -> ProcessRuntime:
    return ProcessRuntime(staging.project.state_dir / "runtime", image_store(staging.project))


def release_state(staging: Staging, release_id: str) -> ReleaseState | None:
    release = staging.store.ledger.releases.get(release_id)
    return release.state if release is not None else None


def kill_when(control: CliProcess, condition: Callable[[], object], what: str) -> None:
    """SIGKILL the controller (only: its daemons live on) as soon as `condition` holds."""
    wait_until(condition, what)
    os.kill(control.pid, signal.SIGKILL)
    assert control.finish() == -signal.SIGKILL


def reconcile(staging: Staging) -> None:
    result = run_cli(["env", "reconcile", ENVIRONMENT], cwd=staging.project.directory)
    assert result.exit_code == 0, result.stdout + result.stderr


def assert_stopped(staging: Staging, release_id: str) -> None:
    """No supervisor of the release, and (once they have had their signal) no replica."""
    assert supervisors_of(process_runtime(staging), release_id) == []
    wait_until(lambda: replicas_of(staging.project, release_id) == [], f"{release_id} stopped")


def test_reconcile_stops_the_release_a_deploy_retired_when_killed_in_confirm(
    open_staging: OpenStaging, start_cli: Callable[..., CliProcess]
) -> None:
    """The switch to v3 is recorded (v1 retired, v2 warm), then the controller is killed
    while it drains v1: v1 ran on for good, since reconcile only started what should run."""
    staging = open_staging(replicas=1, drain=DRAIN)
    v1 = staging.deployed(staging.build("v1"))
    v2 = staging.deployed(staging.build("v2"))
    image = staging.build("v3")
    v3 = release_name(ENVIRONMENT, REPOSITORY, image.split("@", 1)[1])
    control = start_cli(["deploy", ENVIRONMENT, image], cwd=staging.project.directory)

    kill_when(
        control,
        lambda: release_state(staging, v1) is ReleaseState.RETIRED,
        "v3 confirmed: v1 retired in the ledger",
    )
    assert v1 in running(staging), "killed too late: v1 was already stopped"

    reconcile(staging)

    assert running(staging) == {v2, v3}
    assert_stopped(staging, v1)
    record = staging.store.ledger.environments.get(ENVIRONMENT)
    assert record is not None and (record.live_release, record.warm_release) == (v3, v2)
    assert staging.versions(5) == {"v3"}


def test_reconcile_stops_the_release_a_rollback_killed_while_draining_left(
    open_staging: OpenStaging, start_cli: Callable[..., CliProcess]
) -> None:
    staging = open_staging(replicas=1, drain=DRAIN)
    v1 = staging.deployed(staging.build("v1"))
    v2 = staging.deployed(staging.build("v2"))
    control = start_cli(["rollback", ENVIRONMENT], cwd=staging.project.directory)

    kill_when(
        control,
        lambda: release_state(staging, v2) is ReleaseState.FAILED,
        "the rollback recorded: v2 failed in the ledger",
    )
    assert v2 in running(staging), "killed too late: v2 was already stopped"

    reconcile(staging)

    assert running(staging) == {v1}
    assert_stopped(staging, v2)
    assert release_state(staging, v2) is ReleaseState.FAILED
    assert staging.versions(5) == {"v1"}


def test_reconcile_stops_a_rolled_back_canary_and_its_baseline_after_a_kill(
    open_staging: OpenStaging, start_cli: Callable[..., CliProcess]
) -> None:
    """A canary fails its smoke test and is rolled back; the controller is killed while it
    drains the canary, before it stops the canary and the baseline."""
    staging = open_staging(replicas=1, drain=DRAIN, strategy=CANARY_WITH_BASELINE)
    v1_image = staging.build("v1")
    v1 = staging.deployed(v1_image)
    bad = staging.build("v2", "bad-smoke")
    canary = release_name(ENVIRONMENT, REPOSITORY, bad.split("@", 1)[1])
    baseline = baseline_name(v1)
    control = start_cli(["deploy", ENVIRONMENT, bad], cwd=staging.project.directory)

    def rolled_back() -> bool:
        [*_, record] = staging.store.ledger.deploys.of_environment(ENVIRONMENT)
        return record.release_id == canary and record.state is DeployState.ROLLED_BACK

    kill_when(control, rolled_back, "the canary rolled back in the ledger")
    assert {canary, baseline} <= running(staging), "killed too late: already stopped"

    reconcile(staging)

    assert running(staging) == {v1}
    for release_id in (canary, baseline):
        assert_stopped(staging, release_id)
    assert release_state(staging, canary) is ReleaseState.FAILED
    assert release_state(staging, baseline) is ReleaseState.RETIRED
    assert staging.versions(5) == {"v1"}
