"""Rollout status of workloads, watched through the API and failing early with the cause.

Each workload is judged with the semantics of `kubectl rollout status` (observedGeneration,
updated, available, old replicas gone) for Deployment and DaemonSet, the Complete condition
of a Job, the kstatus rules for a StatefulSet (partitions, OnDelete) and a CronJob (accepted,
no run waited for); `deploybook.verify.verdicts` chooses, the rules are pure.
Unlike kubectl it does not sit through a crash loop until the progress deadline: it follows
the workload's pods too and stops as soon as one of them shows a cause that will not heal by
waiting.

Causes carried by `RolloutFailed.cause`:

    CrashLoopBackOff            a container exited non-zero (first crash, see below)
    ImagePullBackOff            the image cannot be pulled (ErrImagePull, InvalidImageName too)
    CreateContainerConfigError  a referenced ConfigMap/Secret key is missing
                                (CreateContainerError and RunContainerError too)
    OOMKilled                   a container was OOM-killed twice
    Unschedulable               a pod the scheduler could not place for UNSCHEDULABLE_GRACE_S,
                                with the scheduler's reason (PodScheduled condition)
    NodeNotReady                a pod waits on a node whose Ready condition is not True, or
                                whose kubelet stopped renewing its heartbeat Lease
    ProgressDeadlineExceeded    the Deployment's Progressing condition says so
    JobFailed                   the Job's Failed condition is True
    ReadinessProbeFailed        a pod not ready failed its readiness probe more often than the
                                budget allows (LivenessProbeFailed likewise); see below
    Timeout                     the deadline passed (naming the worst probe failure, if any)
    NotFound                    the workload does not exist

A container counts as crash-looping after its FIRST non-zero exit: waiting for the kubelet's
CrashLoopBackOff state costs a second crash plus back-off. An environment whose services may
exit while a dependency comes up sets ``timeouts.crashes_allowed`` (exits per container that
are only restarts). OOM kills are the exception: one can be load-related, two are a pattern.
Job pods are left to the Job's own backoffLimit and judged by its Failed condition. The
deadline is the smaller of the configured timeout and the workload's progressDeadlineSeconds
(Deployments only); the result and the error say which.
A probe that keeps failing is read from the kubelet's ``Unhealthy`` events
(`deploybook.verify.probes`): more failures on one pod not ready than the environment's
``timeouts.probe_failures_allowed`` end the rollout before the deadline, naming the probe,
the count and its latest output (an HTTP status code among it).

One :class:`RolloutWatcher` per namespace follows every workload of a release with one
list+watch stream per kind and one for the namespace's pods (`deploybook.cluster.watch`),
however many workloads are waited for; each wait gets the events of its workload and pods.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from deploybook.cluster.watch import EventStream
from deploybook.verify.tracker import Event, ProgressCallback, RolloutResult, RolloutTracker, deadline, selects_pod
from deploybook.verify.verdicts import judge

__all__ = ["WORKLOAD_KINDS", "RolloutResult", "RolloutWatcher", "rolled_out_in", "wait_for_rollout"]

# kind -> (attribute of KubeClients, list method); every call here is a read (list/watch/get).
WORKLOAD_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps", "list_namespaced_deployment"),
    "StatefulSet": ("apps", "list_namespaced_stateful_set"),
    "DaemonSet": ("apps", "list_namespaced_daemon_set"),
    "Job": ("batch", "list_namespaced_job"),
    "CronJob": ("batch", "list_namespaced_cron_job"),
}
LIST_WAIT_S = 30.0  # how long a wait gives the streams for their first list


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
        self._trackers: list[RolloutTracker] = []
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
        probe_failures_allowed: int | None = None,
        crashes_allowed: int = 0,
        uid: str = "",
    ) -> RolloutResult:
        """Wait until ``kind`` ``name`` has rolled out; raise `RolloutFailed` with the cause.

        ``min_generation`` (the generation an apply just returned) makes an older object,
        seen before the apply's change reached the watch, count as not observed yet; ``uid``
        (the one the apply returned) makes an object of that name with another uid (a Job of
        the release before, deleted to run it again) not this workload.
        ``probe_failures_allowed`` is the probe failure budget per replica (None: no budget;
        failing probes are then named only when the deadline passes). ``crashes_allowed`` is
        how many exits of each container are restarts, not a verdict.
        """
        if kind not in WORKLOAD_KINDS:
            raise ValueError(f"cannot wait for a {kind}: known kinds are {', '.join(WORKLOAD_KINDS)}")
        tracker = RolloutTracker(
            self.kube,
            kind,
            self.namespace,
            name,
            timeout_s,
            on_progress,
            min_generation,
            probe_failures_allowed,
            crashes_allowed=crashes_allowed,
            uid=uid,
        )
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

    def _forward(self, tracker: RolloutTracker, tag: str, etype: str, payload: Any) -> None:
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
                pods = [p for p in self._objects["pods"].values() if selects_pod(mine, p)]
                tracker.events.put(("pods", "LIST", pods))
        elif tag == "pods":
            if etype == "LIST":
                tracker.events.put(("pods", "LIST", [p for p in payload if self._selects(tracker, p)]))
            elif self._selects(tracker, payload) or payload["metadata"]["name"] in tracker.pods:
                tracker.events.put(("pods", etype, payload))

    def _selects(self, tracker: RolloutTracker, pod: Mapping[str, Any]) -> bool:
        """Whether ``pod`` is the tracker's, by its workload as this dispatcher last saw it. The
        tracker's own copy is taken on the tracker's thread, which may not have read the
        workload's event yet when the pods' first events come: dropped then, they are not sent
        again while the pod stays as it is (an unschedulable pod does)."""
        obj = self._objects.get(tracker.kind, {}).get(tracker.name)
        if obj is None or not tracker.owns(obj):
            return tracker.selects(pod)
        return selects_pod(obj, pod)


def rolled_out_in(kind: str, namespace: str, obj: Mapping[str, Any], *, timeout_s: float) -> RolloutResult | None:
    """The result when a listed workload object has already rolled out, else None (then wait).

    Lets a checks run judge every complete workload from one list of its kind; only the
    others need a watch.
    """
    verdict = judge(kind, obj)
    if not verdict.done:
        return None
    deadline_s, source = deadline(kind, obj, timeout_s)
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
    probe_failures_allowed: int | None = None,
    crashes_allowed: int = 0,
) -> RolloutResult:
    """Wait for one workload with a watcher of its own (a rollback, a benchmark trial).

    Only reads (list and watch) are made. `on_progress` gets each new status message, e.g.
    "1 of 2 updated replicas available", so a terminal can show what is being waited on.
    """
    with RolloutWatcher(kube, namespace) as watcher:
        return watcher.watch(
            kind,
            name,
            timeout_s=timeout_s,
            on_progress=on_progress,
            probe_failures_allowed=probe_failures_allowed,
            crashes_allowed=crashes_allowed,
        )
