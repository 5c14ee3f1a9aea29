"""kstatus rules: a status for every kind a release may hold, custom resources included.

This module owns the judgement of objects that ``deploybook.verify.workload_status`` does not judge,
following kubernetes-sigs/cli-utils ``pkg/kstatus/status`` (the rules Helm 4 waits with) so a
caller never needs to know the kind:

1. generic rules, for every kind, in order: ``metadata.deletionTimestamp`` -> Terminating;
   ``metadata.generation`` != ``status.observedGeneration`` (both present) -> InProgress;
   a condition ``Reconciling=True`` -> InProgress, ``Stalled=True`` -> Failed;
2. the rules of the object's own kind, when it has some (CronJob, StatefulSet, Pod,
   ReplicaSet, PersistentVolumeClaim, Service, CustomResourceDefinition; ConfigMap, Secret
   and PodDisruptionBudget are Current once they pass the generic rules);
3. a ``Ready`` condition: True -> Current; False or Unknown -> InProgress (kstatus cannot tell a
   Ready=False that will heal from one that will not, so it never fails on it);
4. otherwise Current: a kind that reports nothing has nothing to wait for.

Deployment, DaemonSet and Job keep their rules in ``deploybook.verify.workload_status``
(``kubectl rollout status`` semantics); ``generic_verdict`` refuses them unless the caller
passes those rules in ``rules``. Every result maps to a ``workload_status.Verdict``: Current is
done, Failed carries its reason as the cause, the other statuses are waits the caller bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deploybook.verify.workload_status import Verdict

__all__ = [
    "DELEGATED_KINDS",
    "KindRule",
    "Status",
    "StatusResult",
    "compute",
    "cronjob_verdict",
    "generic_verdict",
    "kind_key",
    "statefulset_verdict",
]


class Status(StrEnum):
    """The kstatus statuses."""

    IN_PROGRESS = "InProgress"
    CURRENT = "Current"
    FAILED = "Failed"
    TERMINATING = "Terminating"
    NOT_FOUND = "NotFound"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class StatusResult:
    """One judgement: the status, why (``reason`` is CamelCase, as kstatus sets it), pod counts."""

    status: Status
    message: str
    reason: str | None = None
    ready: int = 0
    desired: int = 0

    def verdict(self) -> Verdict:
        """The result as a Verdict: done when Current; a cause only when Failed."""
        cause = (self.reason or "Failed") if self.status is Status.FAILED else None
        return Verdict(self.status is Status.CURRENT, self.message, cause, self.ready, self.desired)


KindRule = Callable[[Mapping[str, Any]], StatusResult | Verdict]
# Kinds judged by deploybook.verify.workload_status; pass its rules to generic_verdict to use them here.
DELEGATED_KINDS = frozenset({"apps/Deployment", "apps/DaemonSet", "batch/Job"})


class _Malformed(Exception):
    """A status field of the wrong type: the object's status is Unknown."""


def kind_key(obj: Mapping[str, Any]) -> str:
    """``group/Kind`` of an object, or ``Kind`` for the core group (``apps/StatefulSet``, ``Pod``)."""
    api_version = str(obj.get("apiVersion") or "")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    kind = str(obj.get("kind") or "")
    return f"{group}/{kind}" if group else kind


def compute(obj: Mapping[str, Any] | None, *, rules: Mapping[str, KindRule] | None = None) -> StatusResult:
    """The kstatus status of an object as the API returns it (``None``: it does not exist).

    ``rules`` adds or replaces kind rules, keyed by ``kind_key``; a rule may return a
    StatusResult or a Verdict (done -> Current, a cause -> Failed, else InProgress).
    """
    if obj is None:
        return StatusResult(Status.NOT_FOUND, "not found", "NotFound")
    table = {**KIND_RULES, **(rules or {})}
    key = kind_key(obj)
    if key in DELEGATED_KINDS and key not in table:
        raise ValueError(
            f"{key} is judged by deploybook.verify.workload_status.evaluate_workload, not by kstatus: "
            f"pass rules={{{key!r}: ...}} to generic_verdict, or call evaluate_workload"
        )
    try:
        return _generic(obj) or _kind_rule(table.get(key), obj) or _ready_condition(obj) or _current()
    except _Malformed as e:
        return StatusResult(Status.UNKNOWN, f"cannot read the status of {key}: {e}", "Malformed")


def generic_verdict(obj: Mapping[str, Any] | None, *, rules: Mapping[str, KindRule] | None = None) -> Verdict:
    """The Verdict for any kind: ``compute`` seen as done, waiting, or failed with a cause."""
    return compute(obj, rules=rules).verdict()


def _current(message: str = "Resource is current") -> StatusResult:
    return StatusResult(Status.CURRENT, message)


def _in_progress(reason: str, message: str, ready: int = 0, desired: int = 0) -> StatusResult:
    return StatusResult(Status.IN_PROGRESS, message, reason, ready, desired)


def _kind_rule(rule: KindRule | None, obj: Mapping[str, Any]) -> StatusResult | None:
    if rule is None:
        return None
    result = rule(obj)
    if isinstance(result, StatusResult):
        return result
    status = Status.CURRENT if result.done else Status.FAILED if result.cause else Status.IN_PROGRESS
    return StatusResult(status, result.message, result.cause, result.ready, result.desired)


# --- reading API JSON ----------------------------------------------------------------------


def _mapping(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Malformed(f"{key} is a {type(value).__name__}, not a mapping")
    return value


def _int(section: Mapping[str, Any], key: str, default: int | None) -> int | None:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Malformed(f"{key} is {value!r}, not an integer")
    return value


def _count(section: Mapping[str, Any], key: str, default: int = 0) -> int:
    value = _int(section, key, default)
    return default if value is None else value


def _conditions(obj: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    conditions = _mapping(obj, "status").get("conditions") or []
    if not isinstance(conditions, list):
        raise _Malformed(f"status.conditions is a {type(conditions).__name__}, not a list")
    return [c for c in conditions if isinstance(c, Mapping)]


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in _conditions(obj) if c.get("type") == ctype), None)


def _detail(cond: Mapping[str, Any], fallback: str) -> str:
    return str(cond.get("message") or cond.get("reason") or fallback)


# --- 1. generic rules ----------------------------------------------------------------------


def _generic(obj: Mapping[str, Any]) -> StatusResult | None:
    metadata = _mapping(obj, "metadata")
    if metadata.get("deletionTimestamp"):
        finalizers = ", ".join(str(f) for f in metadata.get("finalizers") or []) or "none"
        message = f"scheduled for deletion at {metadata['deletionTimestamp']} (finalizers: {finalizers})"
        return StatusResult(Status.TERMINATING, message, "Terminating")
    generation = _int(metadata, "generation", None)
    observed = _int(_mapping(obj, "status"), "observedGeneration", None)
    if generation is not None and observed is not None and generation != observed:
        message = f"{obj.get('kind')} generation is {generation}, but latest observed generation is {observed}"
        return _in_progress("LatestGenerationNotObserved", message)
    for cond in _conditions(obj):
        if cond.get("type") == "Reconciling" and cond.get("status") == "True":
            return _in_progress(str(cond.get("reason") or "Reconciling"), _detail(cond, "reconciling"))
        if cond.get("type") == "Stalled" and cond.get("status") == "True":
            return StatusResult(Status.FAILED, _detail(cond, "stalled"), str(cond.get("reason") or "Stalled"))
    return None


# --- 3. the Ready condition ----------------------------------------------------------------


def _ready_condition(obj: Mapping[str, Any]) -> StatusResult | None:
    cond = _condition(obj, "Ready")
    if cond is None:
        return None
    if cond.get("status") == "True":
        return _current("Resource is Ready")
    if cond.get("status") in ("False", "Unknown"):
        message = f"Ready={cond['status']}" + (
            f": {_detail(cond, '')}" if cond.get("message") or cond.get("reason") else ""
        )
        return _in_progress(str(cond.get("reason") or "NotReady"), message)
    return None


# --- 2. kind rules -------------------------------------------------------------------------


def _cronjob(obj: Mapping[str, Any]) -> StatusResult:
    # A CronJob's status has no observedGeneration: nothing says when the controller has read
    # the spec, and it reads the stored spec at every schedule. So a CronJob is rolled out once
    # the API server has stored it; the Jobs it starts are judged as Jobs when they run.
    spec, status = _mapping(obj, "spec"), _mapping(obj, "status")
    schedule = spec.get("schedule", "?")
    if spec.get("suspend") is True:
        return _current(f"schedule {schedule!r} is suspended: no Job starts until spec.suspend is false")
    last = status.get("lastScheduleTime")
    active = len(status.get("active") or [])
    when = f"last scheduled {last}" if last else "not scheduled yet"
    return _current(f"schedule {schedule!r} stored, {when}, {active} active Jobs")


def _statefulset(obj: Mapping[str, Any]) -> StatusResult:
    spec, status = _mapping(obj, "spec"), _mapping(obj, "status")
    want, ready = _count(spec, "replicas", 1), _count(status, "readyReplicas")
    total, updated = _count(status, "replicas"), _count(status, "updatedReplicas")
    if _int(status, "observedGeneration", None) is None:
        return _in_progress("NoObservedGeneration", "waiting for the spec to be observed", ready, want)
    if ready < want:
        return _in_progress("LessReady", f"{ready} of {want} pods ready", ready, want)
    if total > want:
        return _in_progress("ExtraPods", f"{total - want} pods pending termination", ready, want)
    strategy = _mapping(spec, "updateStrategy")
    if strategy.get("type") == "OnDelete":
        return _statefulset_on_delete(status, want, ready, total, updated)
    partition = _count(_mapping(strategy, "rollingUpdate"), "partition")
    if partition > 0:
        return _statefulset_partitioned(obj, partition, want, ready, updated)
    revision = status.get("updateRevision")
    if updated < want:
        return _in_progress("LessUpdated", f"{updated} of {want} pods at revision {revision}", ready, want)
    if status.get("currentRevision") != revision:
        return _in_progress("RevisionMismatch", f"waiting for revision {revision} to become current", ready, want)
    return StatusResult(Status.CURRENT, f"{ready} of {want} pods ready at revision {revision}", None, ready, want)


def _statefulset_on_delete(status: Mapping[str, Any], want: int, ready: int, total: int, updated: int) -> StatusResult:
    # OnDelete: the controller never replaces a pod; it creates a deleted one at the new
    # revision. Waiting would never end, so the spec observed and every pod ready is done,
    # and the message says how many pods someone still has to delete.
    current, revision = status.get("currentRevision"), status.get("updateRevision")
    old = max(total - updated, 0) if current != revision else 0
    message = f"{ready} of {want} pods ready; OnDelete: "
    if old:
        message += f"{old} pods still run revision {current}, delete them to move them to {revision}"
    else:
        message += f"every pod runs revision {revision}"
    return StatusResult(Status.CURRENT, message, None, ready, want)


def _statefulset_partitioned(
    obj: Mapping[str, Any], partition: int, want: int, ready: int, updated: int
) -> StatusResult:
    # Pods at positions >= partition are updated, the others keep their revision; with
    # spec.ordinals.start the pod names start there.
    name = _mapping(obj, "metadata").get("name", "?")
    start = _count(_mapping(_mapping(obj, "spec"), "ordinals"), "start")
    target = max(want - partition, 0)
    revision = _mapping(obj, "status").get("updateRevision")
    pods = f"{name}-{start + partition}..{name}-{start + want - 1}" if target else "no pods"
    if updated < target:
        message = f"{updated} of {target} pods updated to revision {revision} (partition {partition}: {pods})"
        return _in_progress("PartitionRollout", message, ready, want)
    held = min(partition, want)
    message = f"partitioned roll out complete: {pods} at revision {revision}, {held} held by partition {partition}"
    return StatusResult(Status.CURRENT, message, None, ready, want)


def _replicaset(obj: Mapping[str, Any]) -> StatusResult:
    spec, status = _mapping(obj, "spec"), _mapping(obj, "status")
    want, ready = _count(spec, "replicas", 1), _count(status, "readyReplicas")
    available, total = _count(status, "availableReplicas"), _count(status, "replicas")
    failure = _condition(obj, "ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return _in_progress("ReplicaFailure", _detail(failure, "replica failure: check the pods"), ready, want)
    if available < want:
        return _in_progress("LessAvailable", f"{available} of {want} pods available", ready, want)
    if total > want:
        return _in_progress("ExtraPods", f"{total - want} pods pending termination", ready, want)
    return StatusResult(Status.CURRENT, f"{available} of {want} pods available", None, ready, want)


def _pod(obj: Mapping[str, Any]) -> StatusResult:
    # Unlike kstatus (Current: "completed, but not successfully"), a failed Pod fails a release,
    # and a Pod with restartPolicy Never or OnFailure (a task) is current once Succeeded only.
    phase = _mapping(obj, "status").get("phase")
    if phase == "Succeeded":
        return _current("Pod has completed successfully")
    if phase == "Failed":
        return StatusResult(Status.FAILED, "Pod has completed, but not successfully", "PodFailed")
    policy = _mapping(obj, "spec").get("restartPolicy") or "Always"
    if phase == "Running" and policy != "Always":  # a task: Ready for a moment is not done
        return _in_progress("PodRunning", f"Pod is running; restartPolicy {policy}: done once it has Succeeded")
    if phase == "Running":
        return _running_pod(obj)
    scheduled = _condition(obj, "PodScheduled")
    if phase == "Pending" and scheduled and scheduled.get("reason") == "Unschedulable":
        return _in_progress("PodNotScheduled", f"not scheduled yet: {_detail(scheduled, 'unschedulable')}")
    return _in_progress("PodPending", f"Pod is in phase {phase or 'unknown (not observed yet)'}")


def _running_pod(obj: Mapping[str, Any]) -> StatusResult:
    ready = _condition(obj, "Ready")
    if ready is not None and ready.get("status") == "True":
        return _current("Pod is Ready")
    statuses = _mapping(obj, "status").get("containerStatuses") or []
    looping = [
        str(cs.get("name"))
        for cs in statuses
        if isinstance(cs, Mapping)
        and ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
    ]
    if looping:
        return StatusResult(Status.FAILED, f"containers in CrashLoopBackOff: {', '.join(looping)}", "CrashLoopBackOff")
    return _in_progress("PodRunningNotReady", "Pod is running but is not Ready")


def _pvc(obj: Mapping[str, Any]) -> StatusResult:
    phase = _mapping(obj, "status").get("phase") or "unknown"
    if phase == "Bound":
        return _current("PVC is Bound")
    return _in_progress("NotBound", f"PVC is not Bound: phase {phase}")


def _service(obj: Mapping[str, Any]) -> StatusResult:
    # As kstatus: a LoadBalancer needs its cluster IP, not an external address (a cluster with
    # no load balancer controller, like the local stack, never assigns one).
    spec = _mapping(obj, "spec")
    if spec.get("type") == "LoadBalancer" and not spec.get("clusterIP"):
        return _in_progress("NoIPAssigned", "ClusterIP not set. Service type: LoadBalancer")
    ingress = _mapping(_mapping(obj, "status"), "loadBalancer").get("ingress") or []
    external = ", ".join(str(i.get("ip") or i.get("hostname")) for i in ingress if isinstance(i, Mapping))
    return _current("Service is ready" + (f", load balancer at {external}" if external else ""))


def _crd(obj: Mapping[str, Any]) -> StatusResult:
    accepted, established = _condition(obj, "NamesAccepted"), _condition(obj, "Established")
    if accepted is not None and accepted.get("status") == "False":
        return StatusResult(Status.FAILED, _detail(accepted, "names not accepted"), str(accepted.get("reason")))
    if established is not None and established.get("status") == "True":
        return _current("CRD is established")
    if established is not None and established.get("status") == "False" and established.get("reason") != "Installing":
        return StatusResult(Status.FAILED, _detail(established, "not established"), str(established.get("reason")))
    return _in_progress("Installing", "Install in progress")


def _always_current(obj: Mapping[str, Any]) -> StatusResult:
    return _current(f"{obj.get('kind')} is ready once stored")


KIND_RULES: dict[str, KindRule] = {
    "batch/CronJob": _cronjob,
    "apps/StatefulSet": _statefulset,
    "apps/ReplicaSet": _replicaset,
    "Pod": _pod,
    "PersistentVolumeClaim": _pvc,
    "Service": _service,
    "apiextensions.k8s.io/CustomResourceDefinition": _crd,
    "ConfigMap": _always_current,
    "Secret": _always_current,
    "policy/PodDisruptionBudget": _always_current,
}


def cronjob_verdict(obj: Mapping[str, Any]) -> Verdict:
    """A CronJob: done once stored (and not being deleted), suspended or not; see ``_cronjob``."""
    return _judge(obj, _cronjob)


def statefulset_verdict(obj: Mapping[str, Any]) -> Verdict:
    """A StatefulSet under any update strategy: RollingUpdate (with or without partition) or OnDelete."""
    return _judge(obj, _statefulset)


def _judge(obj: Mapping[str, Any], rule: Callable[[Mapping[str, Any]], StatusResult]) -> Verdict:
    try:
        return (_generic(obj) or rule(obj)).verdict()
    except _Malformed as e:
        return StatusResult(Status.UNKNOWN, f"cannot read the status of {kind_key(obj)}: {e}").verdict()
