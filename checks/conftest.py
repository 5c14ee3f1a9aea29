"""Shared pieces of the post-deploy checks: the status table and what is deployed where.

Everything here reads the cluster (list, get, watch); nothing creates, patches or deletes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from deploybook.cluster.watch import NamespaceSnapshot, label_selector, selector_matches
from deploybook.plugin.status_table import StatusTable
from deploybook.verify.digests import CachedManifests, image_matches
from deploybook.verify.rollout import WORKLOAD_KINDS


def pytest_configure(config: pytest.Config) -> None:
    """Print the deployment status table at the end of every run that includes the checks."""
    if not config.pluginmanager.has_plugin("deploybook-status"):
        config.pluginmanager.register(StatusTable(), "deploybook-status")


@pytest.fixture
def announce(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Write a live line to the operator's terminal while a check runs, from xdist workers too.

    A worker's stderr is the controller's terminal (xdist does not capture it), so with
    capture suspended a line written there is seen at once, prefixed with the worker id.
    """
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    worker = getattr(request.config, "workerinput", {}).get("workerid")
    last: list[str] = [""]

    def write(text: str) -> None:
        if text == last[0] or capman is None:
            return
        last[0] = text
        with capman.global_and_fixture_disabled():
            if worker or reporter is None:
                sys.stderr.write(f"[{worker}] {text}\n" if worker else f"{text}\n")
                sys.stderr.flush()
            else:
                reporter.ensure_newline()
                reporter.write_line(text)

    return write


@dataclass(frozen=True)
class Workload:
    """One workload of the namespace whose pods run a service's image."""

    kind: str
    name: str
    selector: str
    pod_labels: Mapping[str, str]
    desired: int
    named_ports: Mapping[str, int]  # container port name -> number, for Service targetPorts
    match: Mapping[str, Any]  # spec.selector as the API gives it

    def pods(self, snapshot: NamespaceSnapshot) -> list[Any]:
        """This workload's pods in the namespace snapshot."""
        return [
            p for p in snapshot.items("Pod") if selector_matches(self.match, p.get("metadata", {}).get("labels") or {})
        ]


@pytest.fixture(scope="session")
def snapshot(kube: Any, environment: Any) -> NamespaceSnapshot:
    """Every kind the checks read, listed once per namespace and shared by all checks.

    With pytest-xdist each worker makes its own. A check that had to wait for a rollout marks
    the snapshot stale, so the checks after it see the new pods and endpoints.
    """
    listers = {kind: getattr(getattr(kube, group), method) for kind, (group, method) in WORKLOAD_KINDS.items()}
    listers.update(
        Pod=kube.core.list_namespaced_pod,
        ReplicaSet=kube.apps.list_namespaced_replica_set,
        Service=kube.core.list_namespaced_service,
        EndpointSlice=kube.discovery.list_namespaced_endpoint_slice,
    )
    return NamespaceSnapshot(environment.cluster.namespace, listers)


@pytest.fixture(scope="session")
def registry_answers(registry: Any) -> CachedManifests:
    """The registry, asked once per (repository, reference) in this session."""
    return CachedManifests(registry)


@pytest.fixture(scope="session")
def container_facts() -> dict[str, Any]:
    """Facts seen inside containers, by `deploybook.verify.containers.facts_key`: one exec per kind."""
    return {}


@pytest.fixture(scope="session")
def deployed(snapshot: NamespaceSnapshot, environment: Any) -> dict[str, list[Workload]]:
    """Service name -> the workloads running its image in the environment's namespace."""
    found: dict[str, list[Workload]] = {s.name: [] for s in environment.services}
    for kind in WORKLOAD_KINDS:
        for obj in snapshot.items(kind):
            template = obj.get("spec", {}).get("template", {})
            images = [c.get("image", "") for c in template.get("spec", {}).get("containers", [])]
            for svc in environment.services:
                if any(image_matches(image, svc.image) for image in images):
                    found[svc.name].append(_workload(kind, obj, template))
    return found


def _workload(kind: str, obj: Mapping[str, Any], template: Mapping[str, Any]) -> Workload:
    spec = obj.get("spec", {})
    desired = spec.get("replicas", 1) if kind != "Job" else spec.get("completions") or 1
    containers = template.get("spec", {}).get("containers", [])
    named_ports = {
        p["name"]: int(p["containerPort"])
        for c in containers
        for p in c.get("ports") or ()
        if p.get("name") and p.get("containerPort")
    }
    return Workload(
        kind,
        obj["metadata"]["name"],
        label_selector(obj),
        template.get("metadata", {}).get("labels") or {},
        desired,
        named_ports,
        spec.get("selector") or {},
    )


@pytest.fixture(scope="session")
def recorded(release: Any, kube: Any, environment: Any) -> dict[str, Any]:
    """What should be running: digest, tag, release time and commit per service.

    `expected(name)` gives (result, source): this run's push result, read when asked (under
    pytest-xdist a later service's push may come after this fixture is made), else the
    `--release FILE` record, else the release record ConfigMap in the namespace.
    """
    from deploybook.evidence.record import load_from_cluster
    from deploybook.verify.digests import expected_result

    record = getattr(release, "source_record", None) or load_from_cluster(kube, environment.cluster.namespace)
    services = dict(record.services) if record else {}
    git = (record.git if record else {}) or {}
    released = (record.finished if record else "") or ""
    commit = str(git.get("commit") or git.get("sha") or "")[:12]
    if getattr(release, "mode", "") == "runbook" and not getattr(release, "dry_run", False):
        # A release run checks what it is releasing; its record is written at the end.
        released = f"{release.started} (this run)"
        commit = release.git.commit[:12] if release.git is not None else commit

    def expected(name: str) -> tuple[Any, str]:
        return expected_result(name, release.results or {}, services)

    return {"expected": expected, "released": released, "commit": commit}
