"""Rollout status of a workload, watched through the API and failing early with the cause.

`wait_for_rollout` follows the semantics of `kubectl rollout status` (observedGeneration,
updated, available, old replicas gone) for Deployment, StatefulSet and DaemonSet, and waits for
the Complete condition of a Job. Unlike kubectl it does not sit through a crash loop until the
progress deadline: it watches the workload's pods too and stops as soon as one of them shows a
cause that will not heal by waiting.

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

A container counts as crash-looping after its FIRST non-zero exit. Waiting for the kubelet's
CrashLoopBackOff state costs a second crash plus back-off, which for a container that runs a
while before crashing breaks the promise of a verdict within 30 s of the first crash. OOM kills
are the exception: one can be load-related, two are a pattern. Job pods are left to the Job's
own backoffLimit and judged by its Failed condition.

The deadline is the smaller of the configured timeout and the workload's
progressDeadlineSeconds (Deployments only); it is recorded in the result and in the error.

Both the workload and its pods are followed with list+watch streams (one thread each, see
`deploybook.cluster.watch.EventStream`) that resume from the last resourceVersion after a dropped connection and list
again when the server answers 410 Gone.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from deploybook.cluster.watch import EventStream, label_selector, list_raw
from deploybook.verify.workload_status import (
    evaluate_workload,
    pod_failure,
    pods_of_current_revision,
    pull_is_retried,
    spec_observed,
)

__all__ = [
    "WORKLOAD_KINDS",
    "Evidence",
    "RolloutFailed",
    "RolloutResult",
    "evaluate_workload",
    "pod_failure",
    "rolled_out_in",
    "wait_for_rollout",
]

# kind -> (attribute of KubeClients, list method); every call here is a read (list/watch/get).
WORKLOAD_KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("apps", "list_namespaced_deployment"),
    "StatefulSet": ("apps", "list_namespaced_stateful_set"),
    "DaemonSet": ("apps", "list_namespaced_daemon_set"),
    "Job": ("batch", "list_namespaced_job"),
}
LOG_TAIL_LINES = 40
EVENT_LIMIT = 25
PULL_GRACE_S = 20.0  # a failed pull must outlast one kubelet retry before it fails a rollout
NODE_CHECK_S = 5.0  # how often the nodes of waiting pods are looked at (also a wake-up)
NODE_LEASE_NAMESPACE = "kube-node-lease"

ProgressCallback = Callable[[str], None]


@dataclass(frozen=True)
class Evidence:
    """What an operator needs to see why a rollout failed."""

    conditions: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    logs: Mapping[str, str] = field(default_factory=dict)  # "pod/container" -> log tail

    def as_text(self) -> str:
        """Render conditions, events and log tails as one plain-text attachment."""
        parts = ["Conditions:", *(f"  {c}" for c in self.conditions or ("(none)",))]
        parts += ["", "Recent events:", *(f"  {e}" for e in self.events or ("(none)",))]
        for where, text in self.logs.items():
            parts += ["", f"Log tail of {where}:", text.rstrip() or "(empty)"]
        return "\n".join(parts) + "\n"


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


class RolloutFailed(Exception):
    """A rollout that will not complete; `cause` is one of the causes in the module docstring."""

    def __init__(
        self,
        *,
        kind: str,
        namespace: str,
        name: str,
        cause: str,
        detail: str,
        evidence: Evidence,
        deadline_s: float,
        deadline_source: str,
        elapsed_s: float,
        timeline: tuple[tuple[float, str], ...] = (),
    ) -> None:
        self.kind, self.namespace, self.name = kind, namespace, name
        self.cause, self.detail, self.evidence = cause, detail, evidence
        self.deadline_s, self.deadline_source = deadline_s, deadline_source
        self.elapsed_s, self.timeline = elapsed_s, timeline
        super().__init__(
            f"{kind} {namespace}/{name} failed to roll out after {elapsed_s:.1f}s: {cause}: "
            f"{detail} (deadline {deadline_s:.0f}s from {deadline_source}). "
            f"See the conditions, events and log tails in the evidence; fix the cause and "
            f"release again."
        )


# --------------------------------------------------------------------------- evidence


def _fmt_condition(cond: Mapping[str, Any]) -> str:
    text = f"{cond.get('type')}={cond.get('status')}"
    if cond.get("reason"):
        text += f" {cond['reason']}"
    return text + (f": {cond['message']}" if cond.get("message") else "")


def _fmt_container(pod: str, cs: Mapping[str, Any]) -> str:
    state = cs.get("state") or {}
    kind = next(iter(state), "unknown")
    detail = state.get(kind) or {}
    reason = detail.get("reason", "")
    code = f" exit {detail['exitCode']}" if "exitCode" in detail else ""
    return (
        f"pod {pod} container {cs.get('name')}: {kind} {reason}{code}, "
        f"ready={cs.get('ready')}, restarts={cs.get('restartCount', 0)}"
    )


def _events(kube: Any, namespace: str, names: set[str]) -> tuple[str, ...]:
    items, _ = list_raw(kube.core.list_namespaced_event, namespace)
    mine = [e for e in items if (e.get("involvedObject") or {}).get("name") in names]
    mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return tuple(
        f"{e.get('lastTimestamp') or e.get('eventTime') or '-'} {e.get('type')} {e.get('reason')} "
        f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}: "
        f"{(e.get('message') or '').strip()} (x{e.get('count') or 1})"
        for e in mine[-EVENT_LIMIT:]
    )


def _log_tail(kube: Any, namespace: str, pod: str, cs: Mapping[str, Any]) -> str:
    previous = cs.get("restartCount", 0) > 0
    try:
        return str(
            kube.core.read_namespaced_pod_log(
                pod,
                namespace,
                container=cs["name"],
                tail_lines=LOG_TAIL_LINES,
                previous=previous,
            )
        )
    except ApiException as exc:
        return f"(log not readable: {exc.status} {exc.reason})"


def collect_evidence(
    kube: Any,
    kind: str,
    namespace: str,
    workload: Mapping[str, Any],
    pods: list[Mapping[str, Any]],
) -> Evidence:
    """Gather conditions, recent events and the log tails of unhealthy containers (reads only)."""
    name = workload.get("metadata", {}).get("name", "?")
    conditions = [f"{kind} {name}: {_fmt_condition(c)}" for c in workload.get("status", {}).get("conditions") or ()]
    logs: dict[str, str] = {}
    for pod in pods:
        pname = pod.get("metadata", {}).get("name", "?")
        conditions += [
            f"pod {pname}: {_fmt_condition(c)}"
            for c in pod.get("status", {}).get("conditions") or ()
            if c.get("status") != "True"
        ]
        for cs in pod.get("status", {}).get("containerStatuses") or ():
            conditions.append(_fmt_container(pname, cs))
            has_run = cs.get("restartCount", 0) > 0 or "waiting" not in (cs.get("state") or {})
            if has_run and (not cs.get("ready") or cs.get("restartCount", 0) > 0):
                logs[f"{pname}/{cs['name']}"] = _log_tail(kube, namespace, pname, cs)
    names = {name} | {p.get("metadata", {}).get("name", "") for p in pods}
    names |= {(p.get("metadata", {}).get("ownerReferences") or [{}])[0].get("name", "") for p in pods}
    try:
        events = _events(kube, namespace, names)
    except ApiException as exc:
        events = (f"(events not readable: {exc.status} {exc.reason})",)
    return Evidence(tuple(conditions), events, logs)


# --------------------------------------------------------------------------- nodes


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or ()
    )


def _parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)


def node_problem(kube: Any, node: str, *, now: datetime | None = None) -> str | None:
    """Why ``node`` cannot run pods now, or None: Ready not True, or a stale heartbeat Lease.

    The Lease goes stale a full lease duration after the kubelet stopped, before the node
    controller marks Ready Unknown (its grace period is longer), so both are looked at.
    """
    body = kube.core.read_node(node, _preload_content=False)
    status = json.loads(body.data).get("status", {})
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return f"Ready={ready.get('status')} {ready.get('reason', '')}: {ready.get('message', '')}".strip()
    try:
        lease = kube.coordination.read_namespaced_lease(node, NODE_LEASE_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    renewed, duration = lease.spec.renew_time, lease.spec.lease_duration_seconds
    if renewed is None or not duration:
        return None
    renewed = renewed if renewed.tzinfo else renewed.replace(tzinfo=UTC)
    if renewed + timedelta(seconds=duration) < (now or datetime.now(UTC)):
        return (
            f"its kubelet stopped renewing the heartbeat lease {NODE_LEASE_NAMESPACE}/{node} "
            f"(last renewed {renewed.isoformat()}, valid {duration}s): is the kubelet running?"
        )
    return None


# --------------------------------------------------------------------------- the wait


def _deadline(kind: str, obj: Mapping[str, Any], timeout_s: float) -> tuple[float, str]:
    pds = obj.get("spec", {}).get("progressDeadlineSeconds") if kind == "Deployment" else None
    if pds is not None and pds < timeout_s:
        return float(pds), "progressDeadlineSeconds"
    return float(timeout_s), "timeout"


class _Tracker:
    """State of one wait: the latest workload and pods, the timeline, and the verdicts."""

    def __init__(
        self,
        kube: Any,
        kind: str,
        namespace: str,
        workload: dict[str, Any],
        timeout_s: float,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.kube, self.kind, self.namespace, self.workload = (
            kube,
            kind,
            namespace,
            workload,
        )
        self.name = workload["metadata"]["name"]
        self.deadline_s, self.deadline_source = _deadline(kind, workload, timeout_s)
        self.started = time.monotonic()
        self.pods: dict[str, dict[str, Any]] = {}
        self.timeline: list[tuple[float, str]] = []
        self.on_progress = on_progress
        self.nodes_checked = 0.0
        self.pull_failed_at: dict[str, float] = {}
        self.nodes_readable: bool | None = None
        self._hash_for: tuple[str, str | None] = (
            "",
            None,
        )  # deployment revision -> RS hash

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def apply(self, tag: str, etype: str, payload: Any) -> None:
        if etype == "BROKEN":
            raise self.failed("WatchFailed", f"the {tag} watch stopped: {payload}")
        if etype == "RETRYING":
            self.note(f"API server not answering the {tag} watch, retrying: {payload}")
            return
        if tag == "workload" and etype in ("ADDED", "MODIFIED"):
            self.workload = payload
        elif tag == "workload" and etype == "DELETED":
            raise self.failed("NotFound", "the workload was deleted while waiting")
        elif etype == "LIST":
            items = payload if tag == "pods" else []
            self.pods = {p["metadata"]["name"]: p for p in items}
            if tag == "workload" and payload:
                self.workload = payload[0]
        elif etype == "DELETED":
            self.pods.pop(payload["metadata"]["name"], None)
        else:
            self.pods[payload["metadata"]["name"]] = payload

    def judge(self) -> RolloutResult | None:
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
            if p.get("spec", {}).get("nodeName") and not _pod_ready(p)
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
        pods = list(self.pods.values())
        if self.kind == "Deployment" and any(pod_failure(p) for p in pods):
            return pods_of_current_revision(self.kind, self.workload, pods, self._rs_hash())
        return pods_of_current_revision(self.kind, self.workload, pods, None)

    def _rs_hash(self) -> str | None:
        """pod-template-hash of the Deployment's current ReplicaSet (looked up when needed)."""
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
                    self._hash_for = (
                        rev,
                        (meta.get("labels") or {}).get("pod-template-hash"),
                    )
        return self._hash_for[1]

    def note(self, message: str) -> None:
        if not self.timeline or self.timeline[-1][1] != message:
            self.timeline.append((round(self.elapsed(), 3), message))
            if self.on_progress:
                self.on_progress(message)

    def failed(self, cause: str, detail: str) -> RolloutFailed:
        self.note(f"failed: {cause}: {detail}")
        evidence = collect_evidence(
            self.kube,
            self.kind,
            self.namespace,
            self.workload,
            list(self.current_pods()),
        )
        return RolloutFailed(
            kind=self.kind,
            namespace=self.namespace,
            name=self.name,
            cause=cause,
            detail=detail,
            evidence=evidence,
            deadline_s=self.deadline_s,
            deadline_source=self.deadline_source,
            elapsed_s=round(self.elapsed(), 3),
            timeline=tuple(self.timeline),
        )


def rolled_out_in(kind: str, namespace: str, obj: Mapping[str, Any], *, timeout_s: float) -> RolloutResult | None:
    """The result when a listed workload object has already rolled out, else None (then wait).

    Lets a checks run judge every complete workload from one list of its kind; only the
    others need `wait_for_rollout` and its watches.
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
    """Wait until `kind` `namespace/name` has rolled out; raise `RolloutFailed` with the cause.

    Only reads (list and watch) are made. `on_progress` gets each new status message, e.g.
    "1 of 2 updated replicas available", so a terminal can show what is being waited on.
    """
    if kind not in WORKLOAD_KINDS:
        raise ValueError(f"cannot wait for a {kind}: known kinds are {', '.join(WORKLOAD_KINDS)}")
    group, method = WORKLOAD_KINDS[kind]
    list_fn = getattr(getattr(kube, group), method)
    by_name = {"field_selector": f"metadata.name={name}"}
    items, rv = list_raw(list_fn, namespace, **by_name)
    if not items:
        placeholder = {"metadata": {"name": name}}
        raise _Tracker(kube, kind, namespace, placeholder, timeout_s, on_progress).failed(
            "NotFound", f"no {kind} named {name} in namespace {namespace}"
        )
    tracker = _Tracker(kube, kind, namespace, items[0], timeout_s, on_progress)
    events: queue.Queue[tuple[str, str, Any]] = queue.Queue()
    stop = threading.Event()
    streams = [
        EventStream(list_fn, namespace, "workload", events, stop, rv, **by_name),
        EventStream(
            kube.core.list_namespaced_pod,
            namespace,
            "pods",
            events,
            stop,
            label_selector=label_selector(items[0]),
        ),
    ]
    for stream in streams:
        stream.start()
    try:
        return _wait(tracker, events)
    finally:
        stop.set()


def _wait(tracker: _Tracker, events: queue.Queue[tuple[str, str, Any]]) -> RolloutResult:
    while True:
        try:
            result = tracker.judge()
        except (OSError, HTTPError) as exc:  # a lookup while the API server is away: judge later
            tracker.note(f"API server not answering, retrying: {type(exc).__name__}")
            result = None
        if result is not None:
            return result
        remaining = tracker.deadline_s - tracker.elapsed()
        if remaining <= 0:
            last = tracker.timeline[-1][1] if tracker.timeline else "no status"
            raise tracker.failed(
                "Timeout",
                f"not rolled out within {tracker.deadline_s:.0f}s; last status: {last}",
            )
        try:
            tracker.apply(*events.get(timeout=min(remaining, NODE_CHECK_S)))
        except queue.Empty:
            continue
