"""Custom resources and bare Pods a release applied, judged until they settle.

Neither has a watcher of its own here: each is read (one GET through the dynamic client)
every POLL_S. A custom resource is judged by ``deploybook.verify.verdicts.judge`` (the kstatus
generic rules: observedGeneration, Reconciling, Stalled, Ready conditions) until it is
Current, Stalled, or the deadline passes. A Pod that no controller owns (a one-off task, a
debug pod) is judged by its own ``restartPolicy``: done once Ready (``Always``) or once
Succeeded (``Never``, ``OnFailure``: a task), failed as a workload's pod is
(``deploybook.verify.workload_status.bare_pod_failure``), with the same evidence. Built-in
kinds without a rollout (Service, ConfigMap, Secret, ...) are not waited for: the endpoint
and digest checks cover what they serve. Reads only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
from urllib3.exceptions import HTTPError

from deploybook.cluster.connect import api_message
from deploybook.errors import RolloutFailed
from deploybook.verify.evidence import collect_evidence
from deploybook.verify.tracker import PULL_GRACE_S, UNSCHEDULABLE_GRACE_S, RolloutResult
from deploybook.verify.verdicts import judge
from deploybook.verify.volumes import claim_problems
from deploybook.verify.workload_status import bare_pod_failure, pull_is_retried

__all__ = ["POLL_S", "is_custom", "is_polled", "wait_for_resource"]

POLL_S = 2.0


def is_custom(api_version: str) -> bool:
    """True for a custom resource's apiVersion: a dotted group that is not one of Kubernetes' own."""
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


def is_polled(api_version: str, kind: str) -> bool:
    """True for what `wait_for_resource` judges: a custom resource, or a bare Pod."""
    return is_custom(api_version) or (api_version == "v1" and kind == "Pod")


def _read(kube: Any, api_version: str, kind: str, namespace: str, name: str) -> Mapping[str, Any] | None:
    resource = kube.dynamic.resources.get(api_version=api_version, kind=kind)
    try:
        obj = resource.get(name=name, namespace=namespace)
    except DynamicApiError as exc:
        if exc.status == 404:
            return None
        raise
    return obj.to_dict()  # type: ignore[no-any-return]


def wait_for_resource(
    kube: Any,
    api_version: str,
    kind: str,
    namespace: str,
    name: str,
    *,
    timeout_s: float,
    on_progress: Callable[[str], None] | None = None,
    crashes_allowed: int = 0,
) -> RolloutResult:
    """Wait until the object is Current by the kstatus rules; raise RolloutFailed with its cause.

    ``crashes_allowed`` (a bare Pod's) is how many exits of each container are restarts."""
    started, timeline = time.monotonic(), list[tuple[float, str]]()
    pull_failed_at: float | None = None

    def fail(cause: str, detail: str, evidence: str = "") -> RolloutFailed:
        elapsed = round(time.monotonic() - started, 3)
        return RolloutFailed(
            kind=kind, namespace=namespace, name=name, cause=cause, detail=detail, evidence=evidence,
            deadline_s=timeout_s, elapsed_s=elapsed, timeline=tuple(timeline),
        )  # fmt: skip

    def pod_failed(pod: Mapping[str, Any]) -> RolloutFailed | None:
        nonlocal pull_failed_at
        found = bare_pod_failure(
            pod, now=datetime.now(UTC), crashes_allowed=crashes_allowed, grace_s=UNSCHEDULABLE_GRACE_S
        )
        if found is None:
            return None
        cause, detail = found
        if pull_is_retried(cause, detail):  # as for a workload's pod: one kubelet retry first
            pull_failed_at = time.monotonic() if pull_failed_at is None else pull_failed_at
            if time.monotonic() - pull_failed_at < PULL_GRACE_S:
                return None
        if cause == "Unschedulable":
            detail = "; ".join([detail, *claim_problems(kube, namespace, pod)])
        return fail(cause, detail, collect_evidence(kube, kind, namespace, pod, [pod]).as_text())

    while True:
        elapsed = time.monotonic() - started
        try:
            obj = _read(kube, api_version, kind, namespace, name)
        except ResourceNotFoundError as exc:
            raise fail(
                "NotFound", f"the cluster serves no kind {kind} in {api_version}: is its CRD installed?"
            ) from exc
        except (ApiException, DynamicApiError, OSError, HTTPError) as exc:
            if getattr(exc, "status", None) in (401, 403):  # waiting changes no permission
                context = getattr(kube, "context", None) or "in-cluster"
                raise fail("Forbidden", f"context {context} may not get {kind} {name}: {api_message(exc)}") from exc
            obj, message = {}, f"not readable, retrying: {type(exc).__name__}"
        if obj is None:
            raise fail("NotFound", f"no {kind} named {name} in namespace {namespace}")
        if kind == "Pod" and obj and (failed := pod_failed(obj)) is not None:
            raise failed
        verdict = judge(kind, obj) if obj else None
        message = verdict.message if verdict else message
        if not timeline or timeline[-1][1] != message:
            timeline.append((round(elapsed, 3), message))
            if on_progress:
                on_progress(message)
        if verdict and verdict.cause:
            raise fail(verdict.cause, verdict.message)
        if verdict and verdict.done:
            return RolloutResult(
                kind, namespace, name, verdict.ready, verdict.desired, round(elapsed, 3), timeout_s, "timeout",
                tuple(timeline),
            )  # fmt: skip
        if elapsed + POLL_S > timeout_s:
            raise fail("Timeout", f"not current within {timeout_s:.0f}s; last status: {message}")
        time.sleep(POLL_S)
