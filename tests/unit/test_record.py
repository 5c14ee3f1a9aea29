"""Release records: JSON round trip, merge of worker fragments, located errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploybook.config.environment import parse_environment
from deploybook.errors import RecordError
from deploybook.evidence.record import build_record, load_file, write_record
from deploybook.release.state import RunState
from deploybook.sources.git import GitState

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


@pytest.fixture
def state(tmp_path: Path) -> RunState:
    env = parse_environment(ENV_TEXT, file=Path("environments/x.yaml"), name="x", root=Path("/r"))
    git = GitState(branch="main", commit="c" * 40, dirty=False, commit_time="2026-01-01T00:00:00Z")
    return RunState(env=env, run_id="20260101T000000Z-abc", run_dir=tmp_path / "run", mode="runbook", git=git)


def test_fragments_from_two_workers_merge(state: RunState, tmp_path: Path) -> None:
    other = RunState(env=state.env, run_id=state.run_id, run_dir=state.run_dir, mode="runbook")
    state.record_service("api", image="reg.example/app/api", tag="t", digest=DIGEST)
    state.record_stage("api", "push", "passed", 1.5)
    other.record_service("web", image="reg.example/app/web", tag="t")
    other.record_stage("web", "build", "failed", 0.2, "BuildError: boom")
    other.write_extra("_manifests", {"kind": "path", "path": "m", "commit": "c" * 40})
    rec = build_record(state, outcome="failed", cluster={"server": "https://k:6443", "version": "v1.34"})
    assert list(rec.services) == ["api", "web"]
    assert rec.services["api"].ref == f"reg.example/app/api@{DIGEST}"
    assert rec.services["web"].stages["build"] == {"outcome": "failed", "duration_s": 0.2, "reason": "BuildError: boom"}
    assert rec.manifest_source["commit"] == "c" * 40
    assert rec.git == {"branch": "main", "commit": "c" * 40, "dirty": False}
    assert rec.cluster["server"] == "https://k:6443" and not rec.passed


def test_round_trip_through_file(state: RunState) -> None:
    state.record_service("api", image="reg.example/app/api", digest=DIGEST, manifests={"api.yaml": "ab"})
    rec = build_record(state, outcome="passed")
    path = write_record(state.run_dir, rec)
    assert path.name == "release.json"
    data = json.loads(path.read_text())
    assert data["services"]["api"]["ref"] == f"reg.example/app/api@{DIGEST}"
    again = load_file(path)
    assert again == rec and again.passed and again.digests() == {"api": DIGEST}


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


def test_prefill_from_record_uses_this_registry(state: RunState) -> None:
    state.record_service("api", image="other.example/app/api", tag="t", digest=DIGEST)
    state.source_record = build_record(state, outcome="passed")
    fresh = RunState(
        env=state.env,
        run_id="r2",
        run_dir=state.run_dir.parent / "r2",
        mode="runbook",
        source_record=state.source_record,
    )
    fresh.prefill_from_record()
    assert fresh.expected_ref("api") == f"reg.example/app/api@{DIGEST}"
    assert fresh.expected_ref("web") is None


def test_api_server_lost_while_saving_the_record_names_the_server(state: RunState) -> None:
    from types import SimpleNamespace

    import urllib3

    from deploybook.errors import ClusterError
    from deploybook.evidence.record import save_to_cluster

    def lost(*args: object) -> None:
        raise urllib3.exceptions.MaxRetryError(None, "/api/v1", OSError("[Errno 111] Connection refused"))  # type: ignore[arg-type]

    core = SimpleNamespace(
        read_namespaced_config_map=lost, replace_namespaced_config_map=lost, create_namespaced_config_map=lost
    )
    kube = SimpleNamespace(
        server="https://10.0.0.1:6443", where="server https://10.0.0.1:6443, context admin", core=core
    )
    record = build_record(state, outcome="failed")
    with pytest.raises(ClusterError) as info:
        save_to_cluster(kube, "ns", record)  # type: ignore[arg-type]
    text = info.value.one_line()
    assert "storing the release record in configmap ns/deploybook-release" in text
    assert "server https://10.0.0.1:6443, context admin" in text and "MaxRetryError" not in text
