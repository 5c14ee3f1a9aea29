"""The plugin through pytester: --env rules, ordering, dependency skips, lock, record, concurrency.

The cluster is faked at its seam (the connect call the engine's clients make, and the
namespace call), and so are the engine's stage tasks: these runs are fast and need no stack.
The fake tasks record what they did (service, task, start and end time) instead of building
and deploying; the runbook modules are written exactly as a team's are.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

# Imported here, before any in-process pytester run snapshots sys.modules, so the fakes
# below patch the very modules the inner runs use.
import deploybook.images.registry
import deploybook.release.clients
import deploybook.release.release
import deploybook.release.session
from deploybook.cluster.lock import LEASE_NAME
from deploybook.errors import BuildError
from deploybook.release.stages import Applied, Built, Pushed
from deploybook.verify.workloads import Workload

pytest_plugins = ["pytester"]

ENV = """\
cluster: {context: fake, namespace: demo}
registry: {address: reg.example}
branch: {name: null}
manifests: {path: m}
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml}
  - {name: web, context: w, image: app/web, manifest: web.yaml}
"""
STAGE = """
import os, pytest
pytestmark = pytest.mark.stage("{stage}")

def test_{stage}(service, release):
    release.wait(service, "{stage}")
    if os.environ.get("INTERRUPT") == f"{{service.name}}:{stage}":
        raise KeyboardInterrupt
"""
CHECK = """
def test_check(service, release):
    digest, _, source = release.engine.expected(service.name)
    assert digest == "sha256:" + "ab" * 32, source
"""
DIGEST = "sha256:" + "ab" * 32


class FakeTasks:
    """The engine's stage tasks, recording (service, task, start, end) and failing on demand."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.fail: str | None = None
        self.seconds = 0.0

    def task(self, name: str) -> Any:
        def run(release: Any, service: Any, say: Any) -> object:
            started = time.monotonic()
            time.sleep(self.seconds)
            with self.log.open("a") as log:
                log.write(f"{service.name} {name} {started:.3f} {time.monotonic():.3f}\n")
            if self.fail == f"{service.name}:{name}":
                raise BuildError("engine said no", stage=name, service=service.name, hint="fix it")
            if release.context.skips_stage(name):
                from deploybook.release.pipeline import Skipped

                return Skipped(release.resumed_note(name))
            if name == "build":
                return Built(f"reg.example/{service.name}", "t", "sha256:" + "1" * 64, {}, "docker build", "")
            if name == "push":
                return Pushed(f"reg.example/{service.name}", DIGEST, "push", "t")
            workload = Workload("Deployment", f"{service.name}-deployment", desired=1)
            return Applied(f"{service.name}.yaml", release.context.run_id, "", "ab", workloads=(workload,))

        return run


class FakeCluster:
    """Leases and ConfigMaps in memory, in the shape of the kubernetes client's answers."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.configmaps: dict[str, dict[str, Any]] = {}
        self.connects = 0
        self.preflights = 0
        self.refuse = ""
        self.registry_pings = 0
        self.registry_refuses = False
        self.coordination = SimpleNamespace(
            read_namespaced_lease=self.read_lease,
            create_namespaced_lease=self.create_lease,
            replace_namespaced_lease=lambda name, ns, body: self.create_lease(ns, body, replace=True),
            delete_namespaced_lease=lambda name, ns, body: self.leases.pop(ns),
        )
        self.core = SimpleNamespace(
            replace_namespaced_config_map=self.replace_cm,
            create_namespaced_config_map=self.create_cm,
            read_namespaced_config_map=self.read_cm,
        )

    def preflight(self, kube: Any, env: Any, manifest_dir: Path, **kwargs: Any) -> list[Any]:
        self.preflights += 1
        if self.refuse:
            from deploybook.errors import PreflightFailed

            raise PreflightFailed(f"1 of 2 services' manifests refused: {self.refuse}", hint="fix the manifest")
        rules = kwargs.get("rules")
        if rules is not None:  # a team's pre-apply policies, as the real preflight calls them
            from deploybook.errors import PreflightFailed

            objects = {
                s.name: [{"kind": "Deployment", "metadata": {"name": f"{s.name}-deployment"}}] for s in env.services
            }
            problems = [p for s in env.services for p in rules(s, objects[s.name])]
            if problems:
                raise PreflightFailed("the team's policies refuse: " + "; ".join(problems))
        return []

    def ping_registry(self, client: Any) -> None:
        self.registry_pings += 1
        if self.registry_refuses:
            from deploybook.errors import RegistryError

            raise RegistryError(f"{client.address}: credentials were refused", hint="check the password")

    def connect(self, **kwargs: Any) -> SimpleNamespace:
        self.connects += 1
        return SimpleNamespace(
            server="https://fake:6443",
            context="fake",
            where="server https://fake:6443, context fake",
            coordination=self.coordination,
            core=self.core,
            server_version=lambda: "v1.34.0",
        )

    def read_lease(self, name: str, ns: str) -> SimpleNamespace:
        if ns not in self.leases:
            raise ApiException(status=404, reason="Not Found")
        spec = self.leases[ns]["spec"]
        return SimpleNamespace(
            metadata=SimpleNamespace(resource_version="1"),
            spec=SimpleNamespace(
                holder_identity=spec["holderIdentity"],
                lease_duration_seconds=spec["leaseDurationSeconds"],
                acquire_time=None,
                renew_time=None if spec["holderIdentity"] != "other" else _future(),
            ),
        )

    def create_lease(self, ns: str, body: dict[str, Any], replace: bool = False) -> None:
        self.leases[ns] = body

    def replace_cm(self, name: str, ns: str, body: dict[str, Any]) -> None:
        if ns not in self.configmaps:
            raise ApiException(status=404, reason="Not Found")
        self.configmaps[ns] = body

    def create_cm(self, ns: str, body: dict[str, Any]) -> None:
        self.configmaps[ns] = body

    def read_cm(self, name: str, ns: str) -> SimpleNamespace:
        if ns not in self.configmaps:
            raise ApiException(status=404, reason="Not Found")
        return SimpleNamespace(data=self.configmaps[ns]["data"])


def _future() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(deploybook.release.clients, "connect", fake.connect)
    monkeypatch.setattr(deploybook.release.session, "ensure_namespace", lambda *a, **k: None)
    # What the context may write is asked of a real API server (tests/e2e/test_git_sources.py).
    monkeypatch.setattr(deploybook.release.session, "require_write_access", lambda *a, **k: None)
    # The preflight's rendering and dry-run are unit-tested in test_preflight.py.
    monkeypatch.setattr(deploybook.release.session, "preflight_release", fake.preflight)
    monkeypatch.setattr(deploybook.images.registry.RegistryClient, "ping", lambda client: fake.ping_registry(client))
    return fake


@pytest.fixture
def tasks(project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> FakeTasks:
    fake = FakeTasks(project.path / "stages.log")
    for name in ("build", "push", "apply"):
        monkeypatch.setitem(deploybook.release.release.TASKS, name, fake.task(name))
    return fake


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A miniature deploybook repository: plugin, one environment, three stages, one check."""
    pytester.makeini(
        "[pytest]\ntestpaths = tests\naddopts = -p no:cacheprovider -p no:allure_pytest -p no:deploybook-evidence\n"
    )
    (pytester.path / "environments").mkdir()
    (pytester.path / "environments" / "demo.yaml").write_text(ENV)
    (pytester.path / "environments" / "other.yaml").write_text(ENV)
    # File names in reverse order: ordering must follow the stage marker, not the name.
    for name, stage in (("test_a", "apply"), ("test_b", "push"), ("test_c", "build")):
        pytester.makepyfile(**{f"runbook/{name}": STAGE.format(stage=stage)})
    pytester.makepyfile(**{"checks/test_check": CHECK, "tests/test_own": "def test_own():\n    assert 1 + 1 == 2\n"})
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=pytester.path, check=True, capture_output=True)
    monkeypatch.delenv("INTERRUPT", raising=False)
    return pytester


def stage_log(project: pytest.Pytester) -> list[tuple[str, str, float, float]]:
    lines = (project.path / "stages.log").read_text().splitlines()
    return [(svc, task, float(start), float(end)) for svc, task, start, end in (line.split() for line in lines)]


def the_record(project: pytest.Pytester) -> dict[str, Any]:
    (path,) = project.path.glob("reports/demo/*/release.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_bare_pytest_runs_own_tests_without_env(project: pytest.Pytester, cluster: FakeCluster) -> None:
    result = project.runpytest()
    result.assert_outcomes(passed=1)
    assert cluster.connects == 0 and not (project.path / "stages.log").exists()


def test_runbook_requires_env(project: pytest.Pytester, cluster: FakeCluster) -> None:
    result = project.runpytest("runbook")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --env NAME is required*(known environments: demo, other)*"])
    assert cluster.connects == 0


def test_unknown_env_lists_known(project: pytest.Pytester, cluster: FakeCluster) -> None:
    result = project.runpytest("checks", "--env", "nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: UnknownEnvironment:*unknown environment 'nope'*demo, other*"])


def test_malformed_yaml_stops_before_the_cluster(project: pytest.Pytester, cluster: FakeCluster) -> None:
    (project.path / "environments" / "demo.yaml").write_text(ENV.replace("namespace: demo}", "namespace: [demo}"))
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: ConfigError:*environments/demo.yaml:1: malformed YAML*"])
    assert cluster.connects == 0 and not (project.path / "stages.log").exists()


def test_stages_run_in_marker_order_then_checks(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    result = project.runpytest("runbook", "--env", "demo", "-v")
    result.assert_outcomes(passed=8)
    for svc in ("api", "web"):  # each service's tasks ran in stage order
        assert [task for s, task, _, _ in stage_log(project) if s == svc] == ["build", "push", "apply"]
    result.stdout.fnmatch_lines(
        [
            "*test_c.py::test_build[[]api[]]*",
            "*test_b.py::test_push[[]api[]]*",
            "*test_a.py::test_apply[[]web[]]*",
            "*checks/test_check.py::test_check[[]api[]]*",
        ]
    )


def test_a_registry_that_refuses_stops_the_release_before_the_cluster_is_touched(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    cluster.registry_refuses = True
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*RegistryError: reg.example: credentials were refused -> check the password*"])
    assert cluster.registry_pings == 1 and cluster.preflights == 0
    assert cluster.leases == {} and cluster.configmaps == {}
    assert not (project.path / "stages.log").exists()


def test_services_are_worked_on_side_by_side(project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks) -> None:
    tasks.seconds = 0.4
    started = time.monotonic()
    result = project.runpytest("runbook", "--env", "demo")
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=8)
    spans = {(svc, task): (start, end) for svc, task, start, end in stage_log(project)}
    api, web = spans[("api", "build")], spans[("web", "build")]
    assert api[0] < web[1] and web[0] < api[1], "the two builds did not overlap"
    assert elapsed < 6 * 0.4 + 3  # three stages of two services, not six one after the other


def test_n_is_ignored_a_run_is_one_process(project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks) -> None:
    result = project.runpytest("runbook", "--env", "demo", "-n", "2")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*deploybook: -n 2 ignored: the services of a run are worked on concurrently*"])
    assert len(the_record(project)["services"]) == 2


def test_failed_stage_skips_that_service_only(project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks) -> None:
    tasks.fail = "web:build"
    result = project.runpytest("runbook", "--env", "demo", "-rs")
    result.assert_outcomes(passed=4, failed=1, skipped=3)
    assert ("web", "push") not in [(s, task) for s, task, _, _ in stage_log(project)]
    result.stdout.fnmatch_lines(["*build failed: BuildError: *engine said no*"])
    result.stdout.fnmatch_lines(["*web's checks are skipped: build failed*"])  # a team's check too
    # One clean line for a deploybook error, not a traceback.
    result.stdout.fnmatch_lines(["*BuildError: [[]stage build, service web[]] engine said no -> fix it*"])
    assert "Traceback" not in result.stdout.str()
    record = the_record(project)
    assert record["outcome"] == "failed"
    assert record["services"]["web"]["stages"]["build"]["outcome"] == "failed"
    assert record["services"]["api"]["stages"]["apply"]["outcome"] == "passed"
    assert record["applied"] == ["api"]


def test_lock_taken_and_released_and_record_kept(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == 0
    assert cluster.leases == {}  # released at the end
    record = the_record(project)
    assert record["outcome"] == "passed" and record["cluster"]["server"] == "https://fake:6443"
    kept = json.loads(cluster.configmaps["demo"]["data"]["release.json"])
    assert kept["run_id"] == record["run_id"]
    result.stdout.fnmatch_lines(["*deploybook: verdict: passed (runbook *"])
    (timings,) = project.path.glob("reports/demo/*/timings.json")
    spent = json.loads(timings.read_text())
    marks = spent["marks"]
    phases = ["configure", "session_start", "session_opened", "collected", "tests_done", "closed", "verdict"]
    assert [marks[p] for p in phases] == sorted(marks[p] for p in phases)  # in the order they happened
    start, end = spent["tasks"]["web"]["push"]
    assert marks["collected"] <= start <= end <= marks["tests_done"]


def test_second_release_refused_naming_holder(project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks) -> None:
    cluster.leases["demo"] = {"spec": {"holderIdentity": "other", "leaseDurationSeconds": 600}}
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: LockHeld:*lease demo/{LEASE_NAME}*locked by other*"])
    assert not (project.path / "stages.log").exists()
    assert cluster.leases["demo"]["spec"]["holderIdentity"] == "other"


def test_resume_from_stage_takes_earlier_outputs_from_record(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    assert project.runpytest("runbook", "--env", "demo").ret == 0
    (first,) = project.path.glob("reports/demo/*/release.json")
    (project.path / "stages.log").unlink()
    result = project.runpytest("runbook", "--env", "demo", "--from-stage", "apply", "--release", str(first), "-rs")
    result.assert_outcomes(passed=4, skipped=4)
    result.stdout.fnmatch_lines(["*resumed at apply; build output taken from release*"])
    (second,) = set(project.path.glob("reports/demo/*/release.json")) - {first}
    assert json.loads(second.read_text())["resumed_from"] == json.loads(first.read_text())["run_id"]


def test_from_stage_needs_release(project: pytest.Pytester, cluster: FakeCluster) -> None:
    result = project.runpytest("runbook", "--env", "demo", "--from-stage", "push")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --from-stage needs --release FILE*"])


def test_expired_lock_needs_take_over_lock(project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks) -> None:
    cluster.leases["demo"] = {"spec": {"holderIdentity": "dead-run", "leaseDurationSeconds": 600}}
    refused = project.runpytest("runbook", "--env", "demo")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["ERROR: LockHeld:*locked by dead-run*expired*--take-over-lock*"])
    taken = project.runpytest("runbook", "--env", "demo", "--take-over-lock")
    assert taken.ret == 0
    taken.stdout.fnmatch_lines(["*took over the lock of dead-run (--take-over-lock)*"])
    assert cluster.leases == {}


def test_take_over_lock_never_displaces_a_live_holder(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    cluster.leases["demo"] = {"spec": {"holderIdentity": "other", "leaseDurationSeconds": 600}}
    result = project.runpytest("runbook", "--env", "demo", "--take-over-lock")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: LockHeld:*locked by other*still being renewed*"])
    assert cluster.leases["demo"]["spec"]["holderIdentity"] == "other"


def test_interrupt_records_what_was_applied_and_frees_the_lock(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERRUPT", "web:apply")
    result = project.runpytest_inprocess("runbook", "--env", "demo", no_reraise_ctrlc=True)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    record = the_record(project)
    # Both applies had finished when Ctrl-C came (the engine works ahead of the tests): the
    # record says what the cluster got, and which test was showing when it stopped.
    assert record["outcome"] == "interrupted" and record["applied"] == ["api", "web"]
    assert record["interrupted_during"].endswith("test_apply[web]")
    assert cluster.leases == {}
    assert json.loads(cluster.configmaps["demo"]["data"]["release.json"])["outcome"] == "interrupted"


def test_rollback_without_a_passed_release_says_so(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    tasks.fail = "web:apply"
    result = project.runpytest("runbook", "--env", "demo", "--rollback-on-failure")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*--rollback-on-failure: no passed release in the namespace yet*"])
    assert the_record(project)["outcome"] == "failed" and the_record(project)["rollback"] == {}


def test_unset_password_variable_stops_before_the_cluster(
    project: pytest.Pytester, cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEMO_REGISTRY_PASSWORD", raising=False)
    (project.path / "environments" / "demo.yaml").write_text(
        ENV.replace(
            "registry: {address: reg.example}",
            "registry:\n  address: reg.example\n  username: ci\n  password_env: DEMO_REGISTRY_PASSWORD",
        )
    )
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: ConfigError:*environments/demo.yaml:5: key 'registry.password_env': "
            "registry reg.example: environment variable DEMO_REGISTRY_PASSWORD is not set*"
        ]
    )
    assert cluster.connects == 0 and not cluster.leases and not (project.path / "stages.log").exists()


def test_missing_password_file_stops_before_the_cluster(project: pytest.Pytester, cluster: FakeCluster) -> None:
    (project.path / "environments" / "demo.yaml").write_text(
        ENV.replace(
            "registry: {address: reg.example}",
            "registry:\n  address: reg.example\n  username: ci\n  password_file: /nonexistent/registry-password",
        )
    )
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: ConfigError:*environments/demo.yaml:5: key 'registry.password_file': "
            "*cannot read password file /nonexistent/registry-password*"
        ]
    )
    assert cluster.connects == 0 and not (project.path / "stages.log").exists()


def test_status_table_from_the_checks_notes(project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks) -> None:
    project.makepyfile(**{"checks/test_status_note": ("def test_note(service, status):\n    status(replicas='1/1')\n")})
    result = project.runpytest("runbook", "--env", "demo")
    result.stdout.fnmatch_lines(["*= deployment status =*", "service*ready*", "api*1/1*", "web*1/1*"])


def test_refused_preflight_stops_before_the_lock_and_any_stage(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    cluster.refuse = "m/web.yaml, document 1 (line 1): image 'app/payments', which no service builds"
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: PreflightFailed: 1 of 2 services' manifests refused: m/web.yaml*"])
    assert cluster.preflights == 1 and not cluster.leases and not cluster.configmaps
    assert not (project.path / "stages.log").exists()


HOOKS = """
def pytest_deploybook_check_workload(workload, service, environment, kube):
    return [f"runs {workload.desired} replica; this team wants 2"] if service.name == "web" else []


def pytest_deploybook_release_finished(record, run_dir):
    (run_dir.parent / "published.txt").write_text(record.run_id + " " + record.outcome)
"""


def test_a_teams_hooks_check_every_workload_and_see_the_finished_record(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    rules = (Path(__file__).resolve().parents[2] / "checks" / "test_50_workload_rules.py").read_text()
    project.makepyfile(**{"checks/test_50_workload_rules": rules})
    project.makeconftest(HOOKS)
    result = project.runpytest("runbook", "--env", "demo")
    result.assert_outcomes(passed=9, failed=1)
    result.stdout.fnmatch_lines(["*Deployment/web-deployment: runs 1 replica; this team wants 2*"])
    record = the_record(project)
    assert (project.path / "reports" / "demo" / "published.txt").read_text() == f"{record['run_id']} failed"


def test_a_teams_manifest_policies_refuse_the_release_before_the_lock(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    project.makeconftest(
        "def pytest_deploybook_check_manifests(service, environment, objects):\n"
        "    return [f\"{o['metadata']['name']}: no team label\" for o in objects if service.name == 'web']\n"
    )
    result = project.runpytest("runbook", "--env", "demo")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*PreflightFailed: the team's policies refuse: web-deployment: no team label*"])
    assert not cluster.leases and not (project.path / "stages.log").exists()


def test_without_a_teams_rule_hook_the_rules_check_says_so(
    project: pytest.Pytester, cluster: FakeCluster, tasks: FakeTasks
) -> None:
    rules = (Path(__file__).resolve().parents[2] / "checks" / "test_50_workload_rules.py").read_text()
    project.makepyfile(**{"checks/test_50_workload_rules": rules})
    result = project.runpytest("runbook", "--env", "demo", "-rs")
    result.assert_outcomes(passed=8, skipped=2)
    result.stdout.fnmatch_lines(["*no pytest_deploybook_check_workload hook is implemented*"])
