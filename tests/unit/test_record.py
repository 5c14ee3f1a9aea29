"""Release records: made from a run's stage outcomes, JSON round trip, located errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import urllib3

from deploybook.config.environment import parse_environment
from deploybook.errors import BuildError, ClusterError, RecordError
from deploybook.evidence.record import ReleaseRecord, ServiceRecord, load_file, write_record
from deploybook.evidence.record_store import save_to_cluster
from deploybook.manifests.apply import AppliedObject
from deploybook.release.context import RunContext
from deploybook.release.pipeline import Pipeline
from deploybook.release.recording import build_record
from deploybook.release.release import Release
from deploybook.release.stages import Applied, Built, Pushed
from deploybook.sources.git import GitState
from deploybook.verify.workloads import Workload

ENV_TEXT = """\
cluster: {context: c, namespace: ns}
registry: {address: reg.example}
branch: {name: null}
manifests: {path: m}
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml}
  - {name: web, context: w, image: app/web, manifest: web.yaml}
"""
DIGEST = "sha256:" + "3" * 64
GIT = GitState(branch="main", commit="c" * 40, dirty=False, commit_time="2026-01-01T00:00:00Z")


def make_release(tmp_path: Path, source: ReleaseRecord | None = None, mode: str = "runbook") -> Release:
    env = parse_environment(ENV_TEXT, file=Path("environments/x.yaml"), name="x", root=Path("/r"))
    context = RunContext(
        env=env,
        mode=mode,
        run_id="20260101T000000Z-abc",
        run_dir=tmp_path / "run",
        started="2026-01-01T00:00:00Z",
        git=GIT,
        source_record=source,
    )
    return Release(context, say=lambda text: None)


def earlier_release(services: dict[str, ServiceRecord]) -> ReleaseRecord:
    """The passed release ``r0`` of environment ``x``, holding ``services``."""
    return ReleaseRecord("r0", "x", "ns", "passed", "", "", services=services)


def run_tasks(release: Release, outcomes: dict[tuple[str, str], object]) -> None:
    """Run a pipeline whose tasks return (or raise) the given outcomes, as the stages would."""

    def task(service: str, name: str) -> object:
        outcome = outcomes[(service, name)]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    chains: dict[str, list[str]] = {}
    for service, name in outcomes:
        chains.setdefault(service, []).append(name)
    release.pipeline = Pipeline(chains, task)
    release.pipeline.start()
    assert release.pipeline.join(10)


def test_the_record_holds_what_each_stage_produced_and_how_its_test_ended(tmp_path: Path) -> None:
    release = make_release(tmp_path)
    workload = Workload("Deployment", "api", generation=2)
    run_tasks(
        release,
        {
            ("api", "build"): Built("reg.example/app/api", "t", "sha256:" + "1" * 64, {}, "docker build", "log"),
            ("api", "push"): Pushed("reg.example/app/api", DIGEST, "push", "t"),
            ("api", "apply"): Applied("api.yaml", "20260101T000000Z-abc", "kind: X\n", "ab", (), (workload,)),
            ("web", "build"): BuildError("boom", service="web"),
            ("web", "push"): Pushed("never", DIGEST, "push"),  # skipped: its build failed
        },
    )
    release.note_stage("api", "push", "passed", 1.5)
    release.note_stage("web", "build", "failed", 0.2, "BuildError: boom")
    rec = build_record(release, outcome="failed", cluster={"server": "https://k:6443", "version": "v1.34"})
    api, web = rec.services["api"], rec.services["web"]
    assert list(rec.services) == ["api", "web"]
    assert api.ref == f"reg.example/app/api@{DIGEST}" and api.image_id == "sha256:" + "1" * 64
    assert api.deployed_by == "20260101T000000Z-abc" and api.manifests == {"api.yaml": "ab"}
    assert api.workloads == ("Deployment/api",) and api.digest_source == "push"
    assert web.stages["build"] == {"outcome": "failed", "duration_s": 0.2, "reason": "BuildError: boom"}
    assert web.digest is None and release.pipeline is not None
    assert release.pipeline.wait("web", "push").reason.startswith("build failed: BuildError")  # type: ignore[attr-defined]
    assert rec.git == {"branch": "main", "commit": "c" * 40, "dirty": False}
    assert rec.cluster["server"] == "https://k:6443" and not rec.passed
    assert rec.applied == ("api",)  # what the engine applied, whatever the tests showed
    assert api.stages["apply"]["outcome"] == "passed"  # from the engine: its test did not report


def test_a_resumed_release_records_the_digest_it_was_resumed_from(tmp_path: Path) -> None:
    previous = ReleaseRecord(
        "r0", "x", "ns", "failed", "", "", services={"api": ServiceRecord("api", image="other/app/api", digest=DIGEST)}
    )
    release = make_release(tmp_path, source=previous)
    release.note_stage("api", "apply", "passed", 0.1)
    rec = build_record(release, outcome="passed")
    assert rec.services["api"].ref == f"reg.example/app/api@{DIGEST}"  # this environment's registry
    assert rec.applied == () and "web" not in rec.services  # nothing was applied by this run


def test_what_a_service_must_run_is_this_runs_push_else_the_record(tmp_path: Path) -> None:
    older = "sha256:" + "9" * 64
    previous = earlier_release({n: ServiceRecord(n, digest=older, tag="old") for n in ("api", "web")})
    release = make_release(tmp_path, source=previous)
    run_tasks(release, {("api", "push"): Pushed("reg.example/app/api", DIGEST, "push", "t")})
    assert release.expected("api") == (DIGEST, "t", "this run")
    assert release.expected("web") == (older, "old", "release record r0")
    assert release.ref("web") == f"reg.example/app/web@{older}"  # this environment's registry


def test_round_trip_through_file(tmp_path: Path) -> None:
    release = make_release(tmp_path)
    run_tasks(release, {("api", "push"): Pushed("reg.example/app/api", DIGEST, "push", "t")})
    release.note_stage("api", "push", "passed", 1.0)
    rec = build_record(release, outcome="passed")
    path = write_record(tmp_path / "run", rec)
    assert path.name == "release.json"
    data = json.loads(path.read_text())
    assert data["services"]["api"]["ref"] == f"reg.example/app/api@{DIGEST}"
    again = load_file(path)
    assert again == rec and again.passed and again.digests() == {"api": DIGEST}


def test_third_party_images_round_trip_through_the_file(tmp_path: Path) -> None:
    entry = {"container": "cache", "written": "redis:7", "reference": "docker.io/library/redis:7"}
    entry |= {"registry": "registry-1.docker.io", "digest": DIGEST, "pinned": f"docker.io/library/redis@{DIGEST}"}
    service = ServiceRecord(name="api", image="reg.example/app/api", digest=DIGEST, third_party=(entry,))
    rec = ReleaseRecord("r1", "test", "ns", "passed", "s", "f", services={"api": service})
    path = write_record(tmp_path, rec)
    assert json.loads(path.read_text())["services"]["api"]["third_party"] == [entry]
    assert load_file(path).services["api"].third_party == (entry,)


POD = AppliedObject("Pod", "ns", "api-seed", "created", False, api_version="v1")
SERVICE = AppliedObject("Service", "ns", "api", "unchanged", False, api_version="v1")


def test_the_objects_a_service_applied_are_recorded_for_a_checks_run_to_judge(tmp_path: Path) -> None:
    release = make_release(tmp_path)
    applied = Applied("api.yaml", "20260101T000000Z-abc", "kind: X\n", "ab", (POD, SERVICE), ())
    run_tasks(release, {("api", "apply"): applied})
    path = write_record(tmp_path / "run", build_record(release, outcome="failed"))
    objects = load_file(path).services["api"].objects
    assert objects == (
        {"apiVersion": "v1", "kind": "Pod", "name": "api-seed", "namespace": "ns"},
        {"apiVersion": "v1", "kind": "Service", "name": "api", "namespace": "ns"},
    )
    checks = make_release(tmp_path, source=load_file(path), mode="checks")
    assert [(o.kind, o.name, o.api_version, o.action) for o in checks.applied_objects("api")] == [
        ("Pod", "api-seed", "v1", "recorded"),
        ("Service", "api", "v1", "recorded"),
    ]
    assert checks.applied_objects("web") == ()  # the record names no object of web


def test_a_run_that_did_not_apply_keeps_the_records_objects_and_a_dry_run_has_none(tmp_path: Path) -> None:
    entry = {"apiVersion": "v1", "kind": "Pod", "name": "api-seed", "namespace": "ns"}
    previous = earlier_release(
        {"api": ServiceRecord("api", digest=DIGEST, workloads=("Deployment/api",), objects=(entry,))}
    )
    resumed = make_release(tmp_path, source=previous)
    resumed.note_stage("api", "rollout", "passed", 0.1)
    api = build_record(resumed, outcome="passed").services["api"]
    assert api.workloads == ("Deployment/api",) and api.objects == (entry,)  # what the cluster still holds
    dry = make_release(tmp_path, source=previous)
    run_tasks(dry, {("api", "apply"): Applied("api.yaml", "r", "kind: X\n", "ab", (POD,), (), dry_run=True)})
    assert dry.applied_objects("api") == ()  # a dry run applied nothing: not even the record's count


def test_relaxed_policies_are_recorded_with_their_reason(tmp_path: Path) -> None:
    relaxed = {"service": "api", "policy": "non_root", "enforce": False, "reason": "vendor", "where": "e.yaml:3"}
    rec = ReleaseRecord("r1", "test", "ns", "passed", "s", "f", relaxed_policies=(relaxed,))
    path = write_record(tmp_path, rec)
    assert json.loads(path.read_text())["relaxed_policies"] == [relaxed]
    assert load_file(path).relaxed_policies == (relaxed,)


def test_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(RecordError) as info:
        load_file(tmp_path / "nope.json")
    assert str(tmp_path / "nope.json") in str(info.value)


@pytest.mark.parametrize(("text", "message"), [("{", "cannot read"), ('{"run_id": 1}', "missing environment")])
def test_malformed_record(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "release.json"
    path.write_text(text)
    with pytest.raises(RecordError, match=message):
        load_file(path)


def test_api_server_lost_while_saving_the_record_names_the_server(tmp_path: Path) -> None:
    def lost(*args: object) -> None:
        raise urllib3.exceptions.MaxRetryError(None, "/api/v1", OSError("[Errno 111] Connection refused"))  # type: ignore[arg-type]

    core = SimpleNamespace(
        read_namespaced_config_map=lost, replace_namespaced_config_map=lost, create_namespaced_config_map=lost
    )
    kube = SimpleNamespace(
        server="https://10.0.0.1:6443", where="server https://10.0.0.1:6443, context admin", core=core
    )
    record = build_record(make_release(tmp_path), outcome="failed")
    with pytest.raises(ClusterError) as info:
        save_to_cluster(kube, "ns", record)  # type: ignore[arg-type]
    text = info.value.one_line()
    assert "storing the release record in configmap ns/deploybook-release" in text
    assert "server https://10.0.0.1:6443, context admin" in text and "MaxRetryError" not in text
