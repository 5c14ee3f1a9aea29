"""What a workload's and a pod's status say: done, waiting, or failed with a cause.

Pure functions over API JSON (the dicts list and watch return), so the rules can be read and
tested on their own. `evaluate_workload` mirrors `kubectl rollout status`; `pod_failure` finds
the causes that waiting will not heal (see deploybook.verify.rollout for the list and the crash rule).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "WORKLOAD_RULES",
    "Verdict",
    "api_time",
    "bare_pod_failure",
    "container_exits",
    "evaluate_workload",
    "job_exits",
    "pod_failure",
    "pod_unschedulable",
    "pods_of_current_revision",
    "pull_is_retried",
]

PULL_FAILURES = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
}
# Pull failures the kubelet retries (after a 10 s back-off): a first 401 can be a pull secret
# the kubelet has not synced yet, so these fail a rollout only when they last.
RETRIED_PULL_FAILURES = {"ImagePullBackOff", "ErrImagePull"}
CONFIG_FAILURES = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class Verdict:
    """One evaluation of a workload: done, still waiting (with why), or failed (with cause)."""

    done: bool
    message: str
    cause: str | None = None
    ready: int = 0
    desired: int = 0


def _condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for cond in obj.get("status", {}).get("conditions") or ():
        if cond.get("type") == ctype:
            return dict(cond)
    return {}


def _observed(obj: Mapping[str, Any]) -> bool:
    generation = obj.get("metadata", {}).get("generation", 0)
    return bool(obj.get("status", {}).get("observedGeneration", 0) >= generation)


def spec_observed(kind: str, obj: Mapping[str, Any]) -> bool:
    """True once the controller has seen the workload's latest spec (Jobs carry no observedGeneration)."""
    return kind == "Job" or _observed(obj)


def _deployment(obj: Mapping[str, Any]) -> Verdict:
    st, want = obj.get("status", {}), obj.get("spec", {}).get("replicas", 1)
    updated, total = st.get("updatedReplicas", 0), st.get("replicas", 0)
    available = st.get("availableReplicas", 0)
    if not _observed(obj):
        return Verdict(False, "waiting for the spec update to be observed", desired=want)
    progressing = _condition(obj, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        msg = progressing.get("message", "progress deadline exceeded")
        return Verdict(False, msg, "ProgressDeadlineExceeded", available, want)
    if updated < want:
        return Verdict(False, f"{updated} of {want} new replicas updated", None, available, want)
    if total > updated:
        msg = f"{total - updated} old replicas pending termination"
        return Verdict(False, msg, None, available, want)
    if available < updated:
        msg = f"{available} of {updated} updated replicas available"
        return Verdict(False, msg, None, available, want)
    return Verdict(True, f"{available} of {want} replicas available", None, available, want)


def _daemonset(obj: Mapping[str, Any]) -> Verdict:
    st = obj.get("status", {})
    want = st.get("desiredNumberScheduled", 0)
    updated, available = (
        st.get("updatedNumberScheduled", 0),
        st.get("numberAvailable", 0),
    )
    if not _observed(obj):
        return Verdict(False, "waiting for the spec update to be observed", desired=want)
    if updated < want:
        return Verdict(False, f"{updated} of {want} pods updated", None, available, want)
    if available < want:
        return Verdict(False, f"{available} of {want} pods available", None, available, want)
    return Verdict(True, f"{available} of {want} pods available", None, available, want)


def _job(obj: Mapping[str, Any]) -> Verdict:
    st = obj.get("status", {})
    want = obj.get("spec", {}).get("completions") or 1
    done = st.get("succeeded", 0)
    failed = _condition(obj, "Failed")
    if failed.get("status") == "True":
        detail = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
        return Verdict(False, detail, "JobFailed", done, want)
    if _condition(obj, "Complete").get("status") == "True":
        return Verdict(True, f"{done} of {want} completions", None, done, want)
    active = st.get("active", 0)
    return Verdict(False, f"{done} of {want} completions, {active} active", None, done, want)


WORKLOAD_RULES: dict[str, Callable[[Mapping[str, Any]], Verdict]] = {
    "Deployment": _deployment,
    "DaemonSet": _daemonset,
    "Job": _job,
}


def evaluate_workload(kind: str, obj: Mapping[str, Any]) -> Verdict:
    """Judge a Deployment, DaemonSet or Job (API JSON) the way `kubectl rollout status` does.

    Every other kind (StatefulSet, CronJob, custom resources) is judged by the kstatus rules;
    ``deploybook.verify.verdicts.judge`` chooses for any kind.
    """
    return WORKLOAD_RULES[kind](obj)


def pod_failure(
    pod: Mapping[str, Any], *, judge_crashes: bool = True, crashes_allowed: int = 0
) -> tuple[str, str] | None:
    """Return (cause, detail) when a pod shows a failure that waiting will not heal.

    A container crashes when it has exited non-zero more than ``crashes_allowed`` times
    (``timeouts.crashes_allowed``); an OOM kill is forgiven once whatever that says.
    A pod being deleted shows none: its containers are stopped on purpose, and one that does
    not stop on SIGTERM ends killed (137) at the grace period. With ``Recreate`` the old pods
    go while the Deployment still names their revision as its own.
    """
    name = pod.get("metadata", {}).get("name", "?")
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return None
    st = pod.get("status", {})
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        where = f"pod {name} container {cs.get('name')}"
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason", ""), waiting.get("message", "")
        if reason in PULL_FAILURES:
            return "ImagePullBackOff", f"{where}: {reason}: {message}".rstrip(": ")
        if reason in CONFIG_FAILURES:
            return "CreateContainerConfigError", f"{where}: {reason}: {message}".rstrip(": ")
        crash = _crash(cs, crashes_allowed) if judge_crashes else None
        if crash:
            return crash[0], f"{where}: {crash[1]}"
        if judge_crashes and reason == "CrashLoopBackOff" and _exits(cs) > crashes_allowed:
            return "CrashLoopBackOff", f"{where}: {message or reason}"
    return None


def pull_is_retried(cause: str, detail: str) -> bool:
    """True for an image pull failure the kubelet will try again (not a malformed name)."""
    return cause == "ImagePullBackOff" and any(f": {r}" in detail for r in RETRIED_PULL_FAILURES)


def _crash(cs: Mapping[str, Any], allowed: int) -> tuple[str, str] | None:
    restarts = cs.get("restartCount", 0)
    last = (cs.get("lastState") or {}).get("terminated") or {}
    now = (cs.get("state") or {}).get("terminated") or {}
    exits = _exits(cs)
    for term in (now, last):
        if term.get("reason") == "OOMKilled":
            if exits > max(1, allowed):
                return "OOMKilled", f"OOMKilled {exits} times"
            return None
    for term in (now, last):
        if term.get("exitCode", 0) != 0 and exits > allowed:
            return "CrashLoopBackOff", (
                f"exited with code {term['exitCode']} ({term.get('reason', 'Error')}), restarts {restarts} "
                f"(timeouts.crashes_allowed: {allowed})"
            )
    return None


def _exits(cs: Mapping[str, Any]) -> int:
    """How often a container has exited: once before each restart, and once more when its
    latest exit is not restarted yet (terminated now, or waiting in the kubelet's back-off)."""
    state = cs.get("state") or {}
    waiting = (state.get("waiting") or {}).get("reason")
    return int(cs.get("restartCount", 0)) + (1 if "terminated" in state or waiting == "CrashLoopBackOff" else 0)


def pods_of_current_revision(
    kind: str,
    obj: Mapping[str, Any],
    pods: Sequence[Mapping[str, Any]],
    pod_template_hash: str | None,
) -> list[Mapping[str, Any]]:
    """Keep the pods of the workload's current revision; old pods may fail while they go."""

    def label(pod: Mapping[str, Any], key: str) -> str | None:
        return (pod.get("metadata", {}).get("labels") or {}).get(key)

    if kind == "Deployment" and pod_template_hash:
        return [p for p in pods if label(p, "pod-template-hash") == pod_template_hash]
    if kind == "StatefulSet" and obj.get("status", {}).get("updateRevision"):
        rev = obj["status"]["updateRevision"]
        return [p for p in pods if label(p, "controller-revision-hash") == rev]
    if kind == "DaemonSet":
        gen = str(obj.get("metadata", {}).get("generation", ""))
        return [p for p in pods if label(p, "pod-template-generation") in (gen, None)]
    return list(pods)


def container_exits(pod: Mapping[str, Any]) -> list[tuple[str, int, str]]:
    """(container, exit code, reason) of each container of ``pod`` that has terminated."""
    found = []
    for cs in pod.get("status", {}).get("containerStatuses") or ():
        term = (cs.get("state") or {}).get("terminated")
        if term is not None:
            found.append((str(cs.get("name")), int(term.get("exitCode", 0)), str(term.get("reason") or "-")))
    return found


def job_exits(job: str, pods: Sequence[Mapping[str, Any]], completions: int) -> tuple[list[str], list[str]]:
    """How a Job's pods ended, judged by exit and not by looking inside: (lines, problems).

    A finished pod has no container to exec into; its containers' exit codes are the verdict.
    Failed attempts of a Job that still reached ``completions`` successes are listed, not
    problems (the Job's backoffLimit allowed them).
    """
    lines, failed = [], []
    succeeded = 0
    for pod in pods:
        name, phase = pod.get("metadata", {}).get("name", "?"), pod.get("status", {}).get("phase")
        exits = container_exits(pod)
        ended = ", ".join(f"container {c} exited with code {code} ({why})" for c, code, why in exits)
        line = f"pod {name} {phase}: {ended or 'no container terminated'}"
        lines.append(line)
        succeeded += phase == "Succeeded"
        if phase == "Failed":
            failed.append(line)
    if succeeded >= completions:
        return lines, []
    if failed:
        return lines, [f"Job {job}: {len(failed)} pod(s) failed, {succeeded} of {completions} succeeded", *failed]
    return lines, [f"Job {job}: {succeeded} of {completions} pods succeeded; the others have not finished"]


def bare_pod_failure(
    pod: Mapping[str, Any], *, now: datetime, crashes_allowed: int = 0, grace_s: float = 15.0
) -> tuple[str, str] | None:
    """(cause, detail) when a Pod of the manifests, owned by no controller, has failed.

    Its own ``restartPolicy`` says what an exit is: with ``Never`` a pod that ended Failed is
    the verdict (``PodFailed``, with each container's exit code, or the kubelet's reason, such
    as an eviction); with ``Always`` or ``OnFailure`` a container that exits non-zero is judged
    as a workload's pod is (``crashes_allowed``). A pull or config failure, or a pod the
    scheduler cannot place for ``grace_s``, fails it as it fails a workload's pod.
    """
    name = (pod.get("metadata") or {}).get("name", "?")
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        _, problems = job_exits(name, [pod], 1)
        why = ": ".join(str(part) for part in (status.get("reason"), status.get("message")) if part)
        ended = [line for line in problems[1:] if not line.endswith("no container terminated")]
        return "PodFailed", "; ".join(ended) or f"pod {name} Failed: {why or 'no reason given'}"
    never = (pod.get("spec") or {}).get("restartPolicy") == "Never"
    found = pod_failure(pod, judge_crashes=not never, crashes_allowed=crashes_allowed)
    return found or pod_unschedulable(pod, now=now, grace_s=grace_s)


def pod_unschedulable(pod: Mapping[str, Any], *, now: datetime, grace_s: float = 15.0) -> tuple[str, str] | None:
    """("Unschedulable", detail) once a pending pod has been unschedulable for over ``grace_s``.

    The time counts from the PodScheduled condition's lastTransitionTime (kstatus counts from
    the pod's creation, which is the fallback). A pod the scheduler has nominated a node for
    (it is preempting other pods to make room) is not failed. ``now`` must be timezone-aware.
    """
    if now.tzinfo is None:
        raise ValueError("pod_unschedulable needs a timezone-aware now, e.g. datetime.now(timezone.utc)")
    status, metadata = pod.get("status") or {}, pod.get("metadata") or {}
    if metadata.get("deletionTimestamp") or status.get("phase") not in (None, "Pending"):
        return None
    if status.get("nominatedNodeName"):
        return None
    cond: Mapping[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    since = api_time(cond.get("lastTransitionTime")) or api_time(metadata.get("creationTimestamp"))
    if since is None or (now - since).total_seconds() <= grace_s:
        return None
    elapsed = (now - since).total_seconds()
    message = cond.get("message") or "no message from the scheduler"
    return "Unschedulable", f"pod {metadata.get('name', '?')} unschedulable for {elapsed:.0f} s: {message}"


def api_time(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339 with its zone) as a datetime; None when absent or malformed."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
