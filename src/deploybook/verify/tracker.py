"""One rollout wait: the latest workload object and its pods, judged after every event.

A :class:`RolloutTracker` is fed the events of one workload and its pods (by
``deploybook.verify.rollout.RolloutWatcher``) and judges them with the pure rules of
``deploybook.verify.workload_status``: done, still waiting (and why), or failed with a cause
that waiting will not heal. It notes every status change on a timeline (the report shows it)
and hands each to a progress callback (the terminal shows it).
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from deploybook.cluster.selectors import label_selector, selector_matches
from deploybook.cluster.watch import list_raw
from deploybook.errors import RolloutFailed
from deploybook.verify.evidence import collect_evidence
from deploybook.verify.nodes import node_problem, pod_ready
from deploybook.verify.probes import ProbeFailure, budget_exceeded, describe, probe_failures
from deploybook.verify.verdicts import judge
from deploybook.verify.volumes import claim_problems
from deploybook.verify.workload_status import (
    job_exits,
    pod_failure,
    pod_unschedulable,
    pods_of_current_revision,
    pull_is_retried,
    spec_observed,
)

__all__ = ["Event", "ProgressCallback", "RolloutResult", "RolloutTracker", "deadline", "selects_pod"]

PULL_GRACE_S = 20.0  # a failed pull must outlast one kubelet retry before it fails a rollout
NODE_CHECK_S = 5.0  # how often the nodes of waiting pods are looked at (also a wake-up)
PROBE_CHECK_S = 5.0  # how often the probe events of pods not ready are read
# The scheduler retries an unschedulable pod when the cluster changes (a node joins, a pod
# goes); past this grace the PodScheduled condition's message is the verdict.
UNSCHEDULABLE_GRACE_S = 10.0

ProgressCallback = Callable[[str], None]
Event = tuple[str, str, Any]  # (tag, type, payload) as EventStream sends them


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("labels") or {}


def selects_pod(workload: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """True when ``workload``'s selector matches ``pod``'s labels."""
    return selector_matches(workload.get("spec", {}).get("selector") or {}, _labels(pod))


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


def deadline(kind: str, obj: Mapping[str, Any], timeout_s: float) -> tuple[float, str]:
    pds = obj.get("spec", {}).get("progressDeadlineSeconds") if kind == "Deployment" else None
    if pds is not None and pds < timeout_s:
        return float(pds), "progressDeadlineSeconds"
    return float(timeout_s), "timeout"


def _generation(obj: Mapping[str, Any] | None) -> int:
    return int(((obj or {}).get("metadata") or {}).get("generation") or 0)


class RolloutTracker:
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
        probe_failures_allowed: int | None = None,
        *,
        crashes_allowed: int = 0,
        uid: str = "",
    ) -> None:
        self.kube, self.kind, self.namespace, self.name = kube, kind, namespace, name
        self.probe_failures_allowed = probe_failures_allowed  # None: probe failures only named
        self.crashes_allowed = crashes_allowed
        self.probes_checked = 0.0
        self.events_readable = True
        self.worst_probe: ProbeFailure | None = None
        self.workload: dict[str, Any] | None = None
        self.timeout_s = timeout_s
        self.deadline_s, self.deadline_source = float(timeout_s), "timeout"
        self.min_generation = min_generation
        self.uid = uid  # set: an object of the name with another uid is an older one, not this
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
        return self.workload is not None and selects_pod(self.workload, pod)

    def owns(self, obj: Mapping[str, Any]) -> bool:
        """False for an object of the workload's name that is another object (its uid differs)."""
        return not self.uid or (obj.get("metadata") or {}).get("uid") in (None, self.uid)

    def see_workload(self, obj: dict[str, Any]) -> None:
        """Take a newer object of the workload; an older generation (a late event) is ignored."""
        if not self.owns(obj):
            return
        if self.workload is not None and _generation(obj) < _generation(self.workload):
            return
        first = self.workload is None
        self.workload = obj
        if first:
            self.deadline_s, self.deadline_source = deadline(self.kind, obj, self.timeout_s)

    def apply(self, tag: str, etype: str, payload: Any) -> None:
        if etype == "BROKEN":
            raise self.failed("WatchFailed", f"the {tag} watch stopped: {payload}")
        if etype == "RETRYING":
            self.note(f"API server not answering the {tag} watch, retrying: {payload}")
        elif tag == "workload" and not self.owns(payload):
            return  # the object this name had before (a Job deleted to run it again)
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
        verdict = judge(self.kind, self.workload)
        if verdict.cause == "JobFailed":  # its pods' exit codes say why
            pods, _ = list_raw(  # listed now: the pods' events may still be on their way
                self.kube.core.list_namespaced_pod, self.namespace, label_selector=label_selector(self.workload)
            )
            _, problems = job_exits(self.name, pods, verdict.desired)
            raise self.failed(verdict.cause, "; ".join([verdict.message, *problems[1:]]))
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
        now = datetime.now(UTC)
        for pod in self.current_pods():
            found = pod_failure(pod, judge_crashes=self.kind != "Job", crashes_allowed=self.crashes_allowed)
            if found and not self.pull_retry_pending(pod["metadata"]["name"], *found):
                raise self.failed(*found)
            if unplaced := pod_unschedulable(pod, now=now, grace_s=UNSCHEDULABLE_GRACE_S):
                cause, detail = unplaced
                raise self.failed(cause, "; ".join([detail, *claim_problems(self.kube, self.namespace, pod)]))
        self.judge_nodes()
        self.judge_probes()
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

    def judge_probes(self, *, now: bool = False) -> None:
        """Fail when a pod not ready failed its readiness or liveness probe beyond the budget.

        Reads the namespace's ``Unhealthy`` events (every PROBE_CHECK_S, or ``now``) and keeps
        the worst failure seen, so a timeout can name it too.
        """
        if not self.events_readable or (not now and time.monotonic() - self.probes_checked < PROBE_CHECK_S):
            return
        waiting = [p for p in self.current_pods() if not pod_ready(p)]
        if not waiting:
            return
        self.probes_checked = time.monotonic()
        try:
            events, _ = list_raw(
                self.kube.core.list_namespaced_event, self.namespace, field_selector="reason=Unhealthy"
            )
        except ApiException as exc:  # a context that may not list events: probes are not named
            self.events_readable = exc.status not in (401, 403)
            return
        except (OSError, HTTPError):  # the API server is away; read again at the next check
            return
        names = {p["metadata"]["name"] for p in waiting}
        uids = {p["metadata"]["uid"] for p in waiting if p["metadata"].get("uid")}
        failures = probe_failures(events, names, pod_uids=uids or None)
        self.worst_probe = max(failures, key=lambda f: f.count, default=None)
        if self.probe_failures_allowed is None:
            return
        broken = budget_exceeded(failures, replicas=len(waiting), allowed_per_replica=self.probe_failures_allowed)
        if broken is not None:
            allowed = self.probe_failures_allowed
            raise self.failed(
                f"{broken.probe}ProbeFailed",
                f"{describe(broken)}; more than {allowed} failures allowed per replica "
                "(timeouts.probe_failures_allowed in the environment file); an application that is "
                "only slow to start needs a startupProbe, whose failures are not counted",
            )

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

    def timed_out(self) -> RolloutFailed:
        """The Timeout verdict: the last status, and the worst probe failure if one was seen."""
        last = self.timeline[-1][1] if self.timeline else "no status"
        try:
            self.judge_probes(now=True)
        except RolloutFailed as exc:  # the budget broke at the last look: that is the cause
            return exc
        probe = f"; {describe(self.worst_probe)}" if self.worst_probe else ""
        return self.failed("Timeout", f"not rolled out within {self.deadline_s:.0f}s; last status: {last}{probe}")

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
                raise self.timed_out()
            try:
                self.apply(*self.events.get(timeout=min(remaining, NODE_CHECK_S)))
            except queue.Empty:
                continue
