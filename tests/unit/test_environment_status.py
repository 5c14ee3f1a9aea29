"""``deploybook status``: one row per environment and service, and its verdict.

The namespace reader is faked with API JSON (the seam the checks' snapshot reader fills with
one list per kind); the real clusters are read in tests/e2e/test_pipeline.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploybook.config.environment import parse_environment
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.release.status import ServiceStatus, format_status, status_of
from deploybook.verify.workloads import Workload

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64
ENV = """\
cluster: {context: c, read_only_context: c-view, namespace: dx29-prod}
registry: {address: reg.example}
branch: {name: main}
manifests: {path: m}
services:
  - {name: gateway, context: g, image: dx29/gateway, manifest: gateway.yaml}
  - {name: worker, context: w, image: dx29/worker, manifest: worker.yaml}
"""


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"dx29-{name}-deployment"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"r/dx29/{name}@{A}"}]},
            },
        },
    }


def pod(name: str, n: int, digest: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{name}-{n}", "labels": {"app": name}},
        "spec": {"containers": [{"name": name, "image": f"r/dx29/{name}@{digest}"}]},
        "status": {"containerStatuses": [{"name": name, "imageID": f"r/dx29/{name}@{digest}", "ready": ready}]},
    }


class Reader:
    def __init__(self, deployments: list[dict[str, Any]], pods: list[dict[str, Any]]) -> None:
        self.listed = {"Deployment": deployments, "StatefulSet": [], "DaemonSet": []}
        self.pods = pods

    def items(self, kind: str) -> list[Any]:
        return self.listed[kind]

    def pods_of(self, workload: Workload) -> list[Any]:
        return workload.pods(self.pods)


def record(outcome: str = "passed") -> ReleaseRecord:
    services = {
        n: ServiceRecord(
            n,
            image=f"r/dx29/{n}",
            digest=A,
            deployed_by="r7",
            source={"commit": "c0ffee" * 7},
            workloads=(f"Deployment/dx29-{n}-deployment",),
        )
        for n in ("gateway", "worker")
    }
    return ReleaseRecord("r9", "prod", "dx29-prod", outcome, "", "2026-01-01T00:00:00Z", services=services)


def rows(reader: Reader, rec: ReleaseRecord | None = None) -> dict[str, ServiceStatus]:
    env = parse_environment(ENV, file=Path("environments/prod.yaml"), name="prod", root=Path("/r"))
    return {r.service: r for r in status_of(env, rec, reader)}


def test_what_runs_as_recorded_and_ready_is_ok() -> None:
    found = rows(
        Reader(
            [deployment("gateway", 2), deployment("worker", 1)],
            [pod("gateway", 1, A), pod("gateway", 2, A), pod("worker", 1, A)],
        ),
        record(),
    )
    gateway = found["gateway"]
    assert (gateway.ready, gateway.desired, gateway.drift, gateway.verdict) == (2, 2, False, "ok")
    assert (
        gateway.release_id == "r7" and gateway.source_commit == "c0ffee" * 7 and gateway.when == "2026-01-01T00:00:00Z"
    )


def test_a_pod_running_another_digest_is_drift_and_a_missing_pod_not_ready() -> None:
    found = rows(
        Reader(
            [deployment("gateway", 2), deployment("worker", 1)],
            [pod("gateway", 1, A), pod("gateway", 2, B), pod("worker", 1, A, ready=False)],
        ),
        record(),
    )
    assert found["gateway"].drift and found["gateway"].verdict == "drift" and found["gateway"].running == (A, B)
    assert not found["worker"].drift and found["worker"].verdict == "not ready"


def test_a_failed_release_an_unrecorded_one_and_nothing_at_all() -> None:
    assert (
        rows(Reader([deployment("gateway", 1)], [pod("gateway", 1, A)]), record("failed"))["gateway"].verdict
        == "release failed"
    )
    unrecorded = rows(Reader([deployment("gateway", 1)], [pod("gateway", 1, A)]))
    assert unrecorded["gateway"].verdict == "unrecorded" and unrecorded["worker"].verdict == "not released"


def test_the_table_and_an_unreachable_environment() -> None:
    found = rows(Reader([deployment("gateway", 1)], [pod("gateway", 1, A)]), record())
    down = ServiceStatus("test", "gateway", problem="ClusterError: API server unreachable")
    lines = format_status([found["gateway"], down])
    assert lines[0].split() == [
        "environment",
        "service",
        "running",
        "recorded",
        "release",
        "source",
        "when",
        "ready",
        "drift",
        "verdict",
    ]
    assert lines[1].split()[:2] == ["prod", "gateway"] and lines[1].split()[-3:] == ["1/1", "no", "ok"]
    assert lines[2].split()[-1] == "unreachable" and lines[-1] == "test: ClusterError: API server unreachable"
    assert down.to_dict()["verdict"] == "unreachable" and found["gateway"].to_dict()["running"] == [A]
