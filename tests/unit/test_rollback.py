"""Rollback logic without a cluster: what is rolled back, how it is rendered, how it is judged.

The cluster is faked at the two seams the rollback uses (server-side apply and the proof that
the restored digests run); the real thing is tests/e2e/test_faults.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

import deploybook.release.rollback as rollback
from deploybook.config.environment import parse_environment
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.manifests.load import load_manifests

ENV = """\
cluster: {context: fake, namespace: demo}
registry: {address: reg.example}
branch: {name: null}
manifests: {path: m}
services:
  - {name: api, context: a, image: app/api, manifest: api.yaml}
"""
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: app/api}]
"""
GOOD, BAD = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def record(
    run_id: str, digest: str, *, outcome: str = "passed", manifests: dict[str, str] | None = None, apply: str = "passed"
) -> ReleaseRecord:
    svc = ServiceRecord(
        name="api",
        image="reg.example/app/api",
        tag="t",
        digest=digest,
        deployed_by=run_id,
        manifests=manifests or {},
        stages={"apply": {"outcome": apply}},
    )
    return ReleaseRecord(
        run_id=run_id,
        environment="demo",
        namespace="demo",
        outcome=outcome,
        started="",
        finished="",
        git={"commit": "c0ffee"},
        services={"api": svc},
    )


@pytest.fixture
def env(tmp_path: Path) -> Any:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "api.yaml").write_text(MANIFEST)
    return parse_environment(ENV, file=tmp_path / "demo.yaml", name="demo", root=tmp_path)


def target_rendering(env: Any, run_id: str) -> str:
    objs = rollback.render_service(
        env.services[0],
        env,
        load_manifests(env.manifests.path / "api.yaml"),
        refs={"app/api": f"reg.example/app/api@{GOOD}"},
        pull_secret=None,
        release_id=run_id,
        git_sha="c0ffee",
    )
    return hashlib.sha256(rollback.rendered_text(objs).encode()).hexdigest()


def test_only_applied_services_the_target_knows_are_rolled_back() -> None:
    target = record("r1", GOOD)
    assert rollback.to_roll_back(record("r2", BAD, outcome="failed"), target) == ["api"]
    assert rollback.to_roll_back(record("r2", BAD, outcome="failed", apply="skipped"), target) == []
    empty = ReleaseRecord(run_id="r0", environment="demo", namespace="demo", outcome="passed", started="", finished="")
    assert rollback.to_roll_back(record("r2", BAD, outcome="failed"), empty) == []


def test_restore_is_exact_when_the_rendering_hashes_to_the_recorded_one(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(rollback, "apply_objects", lambda kube, objs, **kw: applied.append(objs))
    monkeypatch.setattr(rollback, "_prove", lambda *a: [])
    target = record("r1", GOOD, manifests={"api.yaml": target_rendering(env, "r1")})
    result = rollback.roll_back(
        None, env, target, ["api"], manifest_dir=env.manifests.path, timeout_s=5, attempted={"api": BAD}
    )
    assert result.ok and result.to_dict()["services"]["api"] == {
        "from": BAD,
        "to": GOOD,
        "method": "exact",
        "verified": True,
        "detail": f"running {GOOD} again",
    }
    (objs,) = applied
    assert objs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == f"reg.example/app/api@{GOOD}"
    assert objs[0]["metadata"]["annotations"]["deploybook.io/release-id"] == "r1"


def test_changed_manifests_are_re_rendered_and_a_failed_proof_is_not_ok(
    env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollback, "apply_objects", lambda kube, objs, **kw: None)
    monkeypatch.setattr(rollback, "_prove", lambda *a: ["Deployment/api: CrashLoopBackOff"])
    target = record("r1", GOOD, manifests={"api.yaml": "0" * 64})
    result = rollback.roll_back(None, env, target, ["api"], manifest_dir=env.manifests.path, timeout_s=5)
    (svc,) = result.services
    assert svc.method == "re-rendered" and not svc.verified and not result.ok
    assert "CrashLoopBackOff" in svc.detail


def test_a_refused_apply_is_reported_not_raised(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploybook.errors import ApplyError

    def refuse(kube: Any, objs: Any, **kw: Any) -> None:
        raise ApplyError("admission webhook said no", source="https://fake:6443")

    monkeypatch.setattr(rollback, "apply_objects", refuse)
    result = rollback.roll_back(None, env, record("r1", GOOD), ["api"], manifest_dir=env.manifests.path, timeout_s=5)
    assert not result.ok and "could not re-apply" in result.services[0].detail
    assert "admission webhook said no" in result.services[0].detail
