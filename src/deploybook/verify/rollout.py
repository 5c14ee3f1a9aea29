"""Rollout status of workloads, watched through the API and failing early with the cause.

Each workload is judged with the semantics of `kubectl rollout status` (observedGeneration,
updated, available, old replicas gone) for Deployment, StatefulSet and DaemonSet, and the
Complete condition of a Job (the rules are pure, in `deploybook.verify.workload_status`).
Unlike kubectl it does not sit through a crash loop until the progress deadline: it follows
the workload's pods too and stops as soon as one of them shows a cause that will not heal by
waiting.

Causes carried by `RolloutFailed.cause`:

    CrashLoopBackOff            a container exited non-zero (first crash, see below)
    ImagePullBackOff            the image cannot be pulled (ErrImagePull, InvalidImageName too)
    CreateContainerConfigError  a referenced ConfigMap/Secret key is missing
                                (CreateContainerError and RunContainerError too)
    OOMKilled                   a container was OOM-killed twice
    NodeNotReady                a pod waits on a node whose Ready condition is not True, or
                                whose kubelet stopped renewing its heartbeat Lease
    ProgressDeadlineExceeded    the Deployment's Progressing condition says so
    JobFailed                   the Job's Failed condition is True
    Timeout                     the deadline passed (e.g. a readiness probe that never passes)
    NotFound                    the workload does not exist

A container counts as crash-looping after its FIRST non-zero exit: waiting for the kubelet's
CrashLoopBackOff state costs a second crash plus back-off. OOM kills are the exception: one
can be load-related, two are a pattern. Job pods are left to the Job's own backoffLimit and
judged by its Failed condition. The deadline is the smaller of the configured timeout and
the workload's progressDeadlineSeconds (Deployments only); the result and the error say which.

One :class:`RolloutWatcher` per namespace follows every workload of a release with one
list+watch stream per kind and one for the namespace's pods (`deploybook.cluster.watch`),
however many workloads are waited for; each wait gets the events of its workload and pods.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from deploybook.cluster.selectors import label_selector, selector_matches
from deploybook.cluster.watch import EventStream, list_raw
from deploybook.errors import RolloutFailed
from deploybook.verify.evidence import collect_evidence
from deploybook.verify.nodes import node_problem, pod_ready
from deploybook.verify.workload_status import (
    evaluate_workload,
    pod_failure,
    pods_of_current_revision,
    pull_is_retried,
    spec_observed,
)

__all__ = ["WORKLOAD_KINDS", "RolloutResult", "RolloutWatcher", "rolled_out_in", "wait_for_rollout"]

# kind -> (attribute of KubeClients, list method); every call here is a read (list/watch/get).
WORKLOAD_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps", "list_namespaced_deployment"),
    "StatefulSet": ("apps", "list_namespaced_stateful_set"),
    "DaemonSet": ("apps", "list_namespaced_daemon_set"),
    "Job": ("batch", "list_namespaced_job"),
}
PULL_GRACE_S = 20.0  # a failed pull must outlast one kubelet retry before it fails a rollout
NODE_CHECK_S = 5.0  # how often the nodes of waiting pods are looked at (also a wake-up)
LIST_WAIT_S = 30.0  # how long a wait gives the streams for their first list

ProgressCallback = Callable[[str], None]
Event = tuple[str, str, Any]  # (tag, type, payload) as EventStream sends them


@dataclass(frozen=True)
class RolloutResult:
    """A finished rollout: how long it took, which deadline applied, and what was seen."""

    kind: str
    namespace: str
    name: str
    ready: int
    desired: int
    elapsed_s: float
    deadline_s: float
    deadline_source: str  # "timeout" or "progressDeadlineSeconds"
    timeline: tuple[tuple[float, str], ...]


def _deadline(kind: str, obj: Mapping[str, Any], timeout_s: float) -> tuple[float, str]:
    pds = obj.get("spec", {}).get("progressDeadlineSeconds") if kind == "Deployment" else None
    if pds is not None and pds < timeout_s:
        return float(pds), "progressDeadlineSeconds"
    return float(timeout_s), "timeout"


def _generation(obj: Mapping[str, Any] | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("generation") or 0)


class _Tracker:
    """State of one wait: the latest workload and pods, the timeline, and the verdicts."""

    def __init__(
        self,
        kube: Any,
        kind: str,
        namespace: str,
        name: str,
        timeout_s: float,
        on_progress: ProgressCallback | None,
        min_generation: int,
    ) -> None:
        self.kube, self.kind, self.namespace, self.name = kube, kind, namespace, name
        self.workload: dict[str, Any] | None = None
        self.timeout_s = timeout_s
        self.deadline_s, self.deadline_source = float(timeout_s), "timeout"
        self.min_generation = min_generation
        self.started = time.monotonic()
        self.pods: dict[str, dict[str, Any]] = {}
        self.timeline: list[tuple[float, str]] = []
        self.on_progress = on_progress
        self.nodes_checked = 0.0
        self.pull_failed_at: dict[str, float] = {}
        self.nodes_readable: bool | None = None
        self.events: queue.Queue[Event] = queue.Queue()
        self._hash_for: tuple[str, str | None] = ("", None)  # deployment revision -> RS hash

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def selects(self, pod: Mapping[str, Any]) -> bool:
        """True when ``pod`` belongs to this workload (its selector matches the pod's labels)."""
        if self.workload is None:
            return False
        match = self.workload.get("spec", {}).get("selector") or {}
        return selector_matches(match, _labels(pod))

    def see_workload(self, obj: dict[str, Any]) -> None:
        """Take a newer object of the workload; an older generation (a late event) is ignored."""
        if self.workload is not None and _generation(obj) < _generation(self.workload):
            return
        first = self.workload is None
        self.workload = obj
        if first:
            self.deadline_s, self.deadline_source = _deadline(self.kind, obj, self.timeout_s)

    def apply(self, tag: str, etype: str, payload: Any) -> None:
        if etype == "BROKEN":
            raise self.failed("WatchFailed", f"the {tag} watch stopped: {payload}")
        if etype == "RETRYING":
            self.note(f"API server not answering the {tag} watch, retrying: {payload}")
        elif tag == "workload" and etype == "DELETED":
            raise self.failed("NotFound", "the workload was deleted while waiting")
        elif tag == "workload":
            self.see_workload(payload)
        elif etype == "LIST":
            self.pods = {p["metadata"]["name"]: p for p in payload}
        elif etype == "DELETED":
            self.pods.pop(payload["metadata"]["name"], None)
        else:
            self.pods[payload["metadata"]["name"]] = payload

    def judge(self) -> RolloutResult | None:
        if self.workload is None:
            return None  # not listed yet
        if _generation(self.workload) < self.min_generation:
            self.note(f"waiting for the applied {self.kind} to be seen")
            return None
        verdict = evaluate_workload(self.kind, self.workload)
        if verdict.cause:
            raise self.failed(verdict.cause, verdict.message)
        if verdict.done:
            self.note(verdict.message)
            return RolloutResult(
                self.kind,
                self.namespace,
                self.name,
                verdict.ready,
                verdict.desired,
                round(self.elapsed(), 3),
                self.deadline_s,
                self.deadline_source,
                tuple(self.timeline),
            )
        if not spec_observed(self.kind, self.workload):
            # Until the controller observes the new spec, "current" is still the revision being
            # replaced (after a rollback: the crashing one), whose pods must not fail this one.
            self.note(verdict.message)
            return None
        for pod in self.current_pods():
            found = pod_failure(pod, judge_crashes=self.kind != "Job")
            if found and not self.pull_retry_pending(pod["metadata"]["name"], *found):
                raise self.failed(*found)
        self.judge_nodes()
        self.note(verdict.message)
        return None

    def pull_retry_pending(self, pod: str, cause: str, detail: str) -> bool:
        """A pull failure waits out one kubelet retry (PULL_GRACE_S) before it is a verdict."""
        if not pull_is_retried(cause, detail):
            return False
        first = self.pull_failed_at.setdefault(pod, self.elapsed())
        if self.elapsed() - first >= PULL_GRACE_S:
            return False
        self.note(f"{detail}; waiting for the kubelet to retry the pull")
        return True

    def judge_nodes(self) -> None:
        """Fail when a waiting pod sits on a node that is not Ready or lost its heartbeat."""
        if self.nodes_readable is False or time.monotonic() - self.nodes_checked < NODE_CHECK_S:
            return
        self.nodes_checked = time.monotonic()
        waiting = {
            p.get("spec", {}).get("nodeName"): p["metadata"]["name"]
            for p in self.current_pods()
            if p.get("spec", {}).get("nodeName") and not pod_ready(p)
        }
        for node, pod in waiting.items():
            try:
                problem = node_problem(self.kube, node)
            except ApiException as exc:  # e.g. the read-only view role may not read nodes
                self.nodes_readable = exc.status not in (401, 403)
                return
            except (OSError, HTTPError):  # the API server is away; the watches wait for it
                return
            if problem:
                raise self.failed("NodeNotReady", f"pod {pod} waits on node {node}: {problem}")

    def current_pods(self) -> list[Mapping[str, Any]]:
        pods: list[Mapping[str, Any]] = list(self.pods.values())
        if self.workload is None:
            return pods
        if self.kind == "Deployment" and any(pod_failure(p) for p in pods):
            return pods_of_current_revision(self.kind, self.workload, pods, self._rs_hash())
        return pods_of_current_revision(self.kind, self.workload, pods, None)

    def _rs_hash(self) -> str | None:
        """pod-template-hash of the Deployment's current ReplicaSet (looked up when needed)."""
        assert self.workload is not None
        rev = (self.workload["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", "")
        if self._hash_for[0] != rev or self._hash_for[1] is None:
            items, _ = list_raw(
                self.kube.apps.list_namespaced_replica_set,
                self.namespace,
                label_selector=label_selector(self.workload),
            )
            uid = self.workload["metadata"].get("uid")
            for rs in items:
                meta = rs.get("metadata", {})
                owners = {o.get("uid") for o in meta.get("ownerReferences") or ()}
                if uid in owners and (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision") == rev:
                    self._hash_for = (rev, (meta.get("labels") or {}).get("pod-template-hash"))
        return self._hash_for[1]

    def note(self, message: str) -> None:
        if not self.timeline or self.timeline[-1][1] != message:
            self.timeline.append((round(self.elapsed(), 3), message))
            if self.on_progress:
                self.on_progress(message)

    def failed(self, cause: str, detail: str) -> RolloutFailed:
        self.note(f"failed: {cause}: {detail}")
        workload = self.workload or {"metadata": {"name": self.name}}
        evidence = collect_evidence(self.kube, self.kind, self.namespace, workload, list(self.current_pods()))
        return RolloutFailed(
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            cause=cause,
            detail=detail,
            evidence=evidence.as_text(),
            deadline_s=self.deadline_s,
            deadline_source=self.deadline_source,
            elapsed_s=round(self.elapsed(), 3),
            timeline=tuple(self.timeline),
        )

    def wait(self) -> RolloutResult:
        """Judge after every event until the rollout is done, fails, or the deadline passes."""
        while True:
            try:
                result = self.judge()
            except (OSError, HTTPError) as exc:  # a lookup while the API server is away: judge later
                self.note(f"API server not answering, retrying: {type(exc).__name__}")
                result = None
            if result is not None:
                return result
            remaining = self.deadline_s - self.elapsed()
            if remaining <= 0:
                last = self.timeline[-1][1] if self.timeline else "no status"
                raise self.failed("Timeout", f"not rolled out within {self.deadline_s:.0f}s; last status: {last}")
            try:
                self.apply(*self.events.get(timeout=min(remaining, NODE_CHECK_S)))
            except queue.Empty:
                continue


class RolloutWatcher:
    """One namespace's workloads and pods, followed once, for any number of rollout waits.

    ``start(kinds)`` opens a stream per workload kind and one for the pods (opening them early,
    before the apply, means a wait starts from a list already held); ``watch`` blocks until one
    workload has rolled out and may be called from many threads at once. Only reads are made.
    """

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self._sink: queue.Queue[Event] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._streams: dict[str, EventStream] = {}
        self._listed: dict[str, threading.Event] = {}
        self._objects: dict[str, dict[str, dict[str, Any]]] = {}  # tag -> name -> latest object
        self._trackers: list[_Tracker] = []
        self._dispatcher = threading.Thread(target=self._dispatch, name="rollout-dispatch", daemon=True)
        self._dispatcher.start()

    def __enter__(self) -> RolloutWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every stream (they end at their next event or watch window)."""
        self._stop.set()
        self._sink.put(("", "STOP", None))

    def start(self, kinds: Iterable[str]) -> None:
        """Follow ``kinds`` (those of WORKLOAD_KINDS) and the namespace's pods."""
        followed = [kind for kind in kinds if kind in WORKLOAD_KINDS]
        if not followed:
            return
        with self._lock:
            self._open("pods", self.kube.core.list_namespaced_pod)
            for kind in followed:
                group, method = WORKLOAD_KINDS[kind]
                self._open(kind, getattr(getattr(self.kube, group), method))

    def _open(self, tag: str, list_fn: Callable[..., Any]) -> None:
        if tag in self._streams:
            return
        self._listed[tag] = threading.Event()
        self._objects[tag] = {}
        stream = EventStream(list_fn, self.namespace, tag, self._sink, self._stop)
        self._streams[tag] = stream
        stream.start()

    def watch(
        self,
        kind: str,
        name: str,
        *,
        timeout_s: float,
        on_progress: ProgressCallback | None = None,
        min_generation: int = 0,
    ) -> RolloutResult:
        """Wait until ``kind`` ``name`` has rolled out; raise `RolloutFailed` with the cause.

        ``min_generation`` (the generation an apply just returned) makes an older object,
        seen before the apply's change reached the watch, count as not observed yet.
        """
        if kind not in WORKLOAD_KINDS:
            raise ValueError(f"cannot wait for a {kind}: known kinds are {', '.join(WORKLOAD_KINDS)}")
        tracker = _Tracker(self.kube, kind, self.namespace, name, timeout_s, on_progress, min_generation)
        with self._lock:
            # Registered before its stream starts, or seeded from what the streams hold: either
            # way the tracker sees every event from the list on, and in order.
            if kind in self._streams and self._listed[kind].is_set() and self._listed["pods"].is_set():
                if (obj := self._objects[kind].get(name)) is not None:
                    tracker.see_workload(obj)
                tracker.pods = {n: p for n, p in self._objects["pods"].items() if tracker.selects(p)}
            self._trackers.append(tracker)
        try:
            self.start([kind])
            for tag in (kind, "pods"):
                self._listed[tag].wait(LIST_WAIT_S)
            with self._lock:
                found = name in self._objects[kind]
            if not found and not min_generation:
                raise tracker.failed("NotFound", f"no {kind} named {name} in namespace {self.namespace}")
            return tracker.wait()
        finally:
            with self._lock:
                self._trackers.remove(tracker)

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            tag, etype, payload = self._sink.get()
            if etype == "STOP":
                return
            with self._lock:
                self._remember(tag, etype, payload)
                for tracker in self._trackers:
                    self._forward(tracker, tag, etype, payload)

    def _remember(self, tag: str, etype: str, payload: Any) -> None:
        objects = self._objects.get(tag)
        if objects is None:
            return
        if etype == "LIST":
            objects.clear()
            objects.update({o["metadata"]["name"]: o for o in payload})
            self._listed[tag].set()
        elif etype == "DELETED":
            objects.pop(payload["metadata"]["name"], None)
        elif etype in ("ADDED", "MODIFIED"):
            objects[payload["metadata"]["name"]] = payload

    def _forward(self, tracker: _Tracker, tag: str, etype: str, payload: Any) -> None:
        if etype in ("BROKEN", "RETRYING"):
            if tag in (tracker.kind, "pods"):
                tracker.events.put((tag, etype, payload))
        elif tag == tracker.kind:
            mine = (
                payload
                if etype != "LIST"
                else next((o for o in payload if o["metadata"]["name"] == tracker.name), None)
            )
            if mine is None or mine["metadata"]["name"] != tracker.name:
                return
            tracker.events.put(("workload", "MODIFIED" if etype == "LIST" else etype, mine))
            if etype != "DELETED":  # the pods as they are now, by this object's selector
                match = mine.get("spec", {}).get("selector") or {}
                pods = [p for p in self._objects["pods"].values() if selector_matches(match, _labels(p))]
                tracker.events.put(("pods", "LIST", pods))
        elif tag == "pods":
            if etype == "LIST":
                tracker.events.put(("pods", "LIST", [p for p in payload if tracker.selects(p)]))
            elif tracker.selects(payload) or payload["metadata"]["name"] in tracker.pods:
                tracker.events.put(("pods", etype, payload))


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def rolled_out_in(kind: str, namespace: str, obj: Mapping[str, Any], *, timeout_s: float) -> RolloutResult | None:
    """The result when a listed workload object has already rolled out, else None (then wait).

    Lets a checks run judge every complete workload from one list of its kind; only the
    others need a watch.
    """
    verdict = evaluate_workload(kind, obj)
    if not verdict.done:
        return None
    deadline_s, source = _deadline(kind, obj, timeout_s)
    name = obj.get("metadata", {}).get("name", "?")
    return RolloutResult(
        kind, namespace, name, verdict.ready, verdict.desired, 0.0, deadline_s, source, ((0.0, verdict.message),)
    )


def wait_for_rollout(
    kube: Any,
    kind: str,
    namespace: str,
    name: str,
    *,
    timeout_s: float,
    on_progress: ProgressCallback | None = None,
) -> RolloutResult:
    """Wait for one workload with a watcher of its own (a rollback, a benchmark trial).

    Only reads (list and watch) are made. `on_progress` gets each new status message, e.g.
    "1 of 2 updated replicas available", so a terminal can show what is being waited on.
    """
    with RolloutWatcher(kube, namespace) as watcher:
        return watcher.watch(kind, name, timeout_s=timeout_s, on_progress=on_progress)
