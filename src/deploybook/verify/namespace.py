"""Where a check reads the namespace from: one snapshot for a checks run, fresh lists for a release.

A checks run reads one list per kind for the whole namespace and shares it between every
check (:class:`SnapshotReader`); a release lists what a check needs when it asks, because its
apply just changed the namespace (:class:`LiveReader`). Only list calls are made.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Protocol

from deploybook.cluster.watch import NamespaceSnapshot, list_raw
from deploybook.verify.rollout import WORKLOAD_KINDS
from deploybook.verify.workloads import TEMPLATE_KINDS, Workload, namespace_workloads

__all__ = ["LiveReader", "Reader", "SnapshotReader", "pods_of_all"]


class Reader(Protocol):
    """Where a check reads the namespace from."""

    def items(self, kind: str) -> list[Any]: ...

    def workloads(self) -> list[Workload]: ...

    def pods_of(self, workload: Workload) -> list[Any]: ...

    def slices_of(self, service: str) -> list[Any]: ...

    def forget_pods(self) -> None: ...


class SnapshotReader:
    """Checks alone: one list per kind for the whole namespace, shared by every check."""

    def __init__(self, kube: Any, namespace: str) -> None:
        listers = {kind: getattr(getattr(kube, group), method) for kind, (group, method) in WORKLOAD_KINDS.items()}
        listers.update(
            Pod=kube.core.list_namespaced_pod,
            Service=kube.core.list_namespaced_service,
            EndpointSlice=kube.discovery.list_namespaced_endpoint_slice,
        )
        self.snapshot = NamespaceSnapshot(namespace, listers)
        self._workloads: list[Workload] | None = None
        self._pod_index: tuple[list[Any], dict[tuple[str, str], list[Any]]] | None = None
        self._lock = threading.Lock()  # guards what is parsed or indexed once

    def items(self, kind: str) -> list[Any]:
        return self.snapshot.items(kind)

    def workloads(self) -> list[Workload]:
        """The namespace's workloads, parsed once: every service's checks look among them."""
        with self._lock:
            if self._workloads is None:
                self._workloads = namespace_workloads({kind: self.items(kind) for kind in TEMPLATE_KINDS})
            return self._workloads

    def pods_of(self, workload: Workload) -> list[Any]:
        pods = self.snapshot.items("Pod")
        match = workload.match.get("matchLabels") or {}
        if not match:
            return workload.pods(pods)
        # A pod of the workload carries every one of its matchLabels: any one narrows the search.
        return workload.pods(self._by_label(pods).get(next(iter(match.items())), ()))

    def _by_label(self, pods: list[Any]) -> dict[tuple[str, str], list[Any]]:
        """The snapshot's pods by each (label, value) they carry, indexed once per listing."""
        with self._lock:
            if self._pod_index is None or self._pod_index[0] is not pods:
                index: dict[tuple[str, str], list[Any]] = {}
                for pod in pods:
                    for label in (pod.get("metadata", {}).get("labels") or {}).items():
                        index.setdefault(label, []).append(pod)
                self._pod_index = (pods, index)
            return self._pod_index[1]

    def slices_of(self, service: str) -> list[Any]:
        return self.snapshot.items("EndpointSlice")

    def forget_pods(self) -> None:
        self.snapshot.invalidate("Pod")


class LiveReader:
    """A release: what a check needs, listed when it asks (the apply just changed it)."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace

    def items(self, kind: str) -> list[Any]:
        if kind == "Service":
            return list_raw(self.kube.core.list_namespaced_service, self.namespace)[0]
        if kind == "Pod":
            return list_raw(self.kube.core.list_namespaced_pod, self.namespace)[0]
        group, method = WORKLOAD_KINDS[kind]
        return list_raw(getattr(getattr(self.kube, group), method), self.namespace)[0]

    def workloads(self) -> list[Workload]:
        return namespace_workloads({kind: self.items(kind) for kind in TEMPLATE_KINDS})

    def pods_of(self, workload: Workload) -> list[Any]:
        pods, _ = list_raw(self.kube.core.list_namespaced_pod, self.namespace, label_selector=workload.selector)
        return workload.pods(pods)

    def slices_of(self, service: str) -> list[Any]:
        return list_raw(
            self.kube.discovery.list_namespaced_endpoint_slice,
            self.namespace,
            label_selector=f"kubernetes.io/service-name={service}",
        )[0]

    def forget_pods(self) -> None:
        """Nothing is kept: every read lists again."""


def pods_of_all(reader: Reader, workloads: Iterable[Workload]) -> list[Any]:
    """The pods of ``workloads``, each once: selectors may overlap (a stable Deployment whose
    ``app: web`` selects its canary's pods too, beside the canary's own)."""
    seen: dict[str, Any] = {}
    for wl in workloads:
        for pod in reader.pods_of(wl):
            seen.setdefault(pod.get("metadata", {}).get("name", ""), pod)
    return list(seen.values())
