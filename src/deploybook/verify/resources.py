"""Custom resources a release applied, judged by the kstatus generic rules until they settle.

A custom resource has no watcher of its own here: it is read (one GET through the dynamic
client) every POLL_S and judged by ``deploybook.verify.verdicts.judge`` (observedGeneration,
Reconciling, Stalled, Ready conditions) until it is Current, Stalled, or the deadline passes.
Built-in kinds without a rollout (Service, ConfigMap, Secret, ...) are not waited for: the
endpoint and digest checks cover what they serve. Reads only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError
from urllib3.exceptions import HTTPError

from deploybook.errors import RolloutFailed
from deploybook.verify.tracker import RolloutResult
from deploybook.verify.verdicts import judge

__all__ = ["POLL_S", "is_custom", "wait_for_resource"]

POLL_S = 2.0


def is_custom(api_version: str) -> bool:
    """True for a custom resource's apiVersion: a dotted group that is not one of Kubernetes' own."""
    group = api_version.rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


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
) -> RolloutResult:
    """Wait until the object is Current by the kstatus rules; raise RolloutFailed with its cause."""
    started, timeline = time.monotonic(), list[tuple[float, str]]()

    def fail(cause: str, detail: str) -> RolloutFailed:
        elapsed = round(time.monotonic() - started, 3)
        return RolloutFailed(
            kind=kind, namespace=namespace, name=name, cause=cause, detail=detail,
            deadline_s=timeout_s, elapsed_s=elapsed, timeline=tuple(timeline),
        )  # fmt: skip

    while True:
        elapsed = time.monotonic() - started
        try:
            obj = _read(kube, api_version, kind, namespace, name)
        except ResourceNotFoundError as exc:
            raise fail(
                "NotFound", f"the cluster serves no kind {kind} in {api_version}: is its CRD installed?"
            ) from exc
        except (ApiException, DynamicApiError, OSError, HTTPError) as exc:
            obj, message = {}, f"not readable, retrying: {type(exc).__name__}"
        if obj is None:
            raise fail("NotFound", f"no {kind} named {name} in namespace {namespace}")
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
