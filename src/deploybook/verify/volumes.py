"""Why a pod's PersistentVolumeClaims hold it back: a claim missing, or Pending and why.

The scheduler says only "pod has unbound immediate PersistentVolumeClaims"; which claim, and
what keeps it from binding (no storage class and no default one in the cluster, a class the
provisioner fails for, no PersistentVolume that matches), is on the claim and its events.
`claim_problems` reads them for one unschedulable pod, so the rollout verdict names the cause.

Reads only: get the claims, list the namespace's events of each claim, list StorageClasses
(cluster-scoped; a context that may not read them gets no word on the default class).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from deploybook.cluster.watch import list_raw

__all__ = ["claim_names", "claim_problems", "describe_claim"]

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The claims a pod mounts: named ones, and those of its generic ephemeral volumes."""
    pod_name = (pod.get("metadata") or {}).get("name", "")
    names = []
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        if claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            names.append(claim)
        elif volume.get("ephemeral") is not None:
            names.append(f"{pod_name}-{volume.get('name', '')}")
    return names


def describe_claim(
    name: str,
    claim: Mapping[str, Any] | None,
    events: Sequence[Mapping[str, Any]],
    classes: Mapping[str, bool] | None,
) -> str | None:
    """One sentence on why claim ``name`` keeps a pod from being placed, or None when bound.

    ``classes`` are the cluster's StorageClasses, each name to whether it is a default (None:
    not known, the context may not read them); ``events`` the claim's, newest last.
    """
    if claim is None:
        return f"PersistentVolumeClaim {name} does not exist: add it to the manifests or fix the claimName"
    phase = (claim.get("status") or {}).get("phase") or "Pending"
    if phase == "Bound":
        return None
    spec = claim.get("spec") or {}
    storage_class = spec.get("storageClassName")
    if phase == "Lost":
        where = f"its PersistentVolume {spec.get('volumeName')}" if spec.get("volumeName") else "its volume"
        text = f"PersistentVolumeClaim {name} is Lost: {where} is gone"
    elif storage_class == "":
        text = (
            f'PersistentVolumeClaim {name} is {phase}: storageClassName "" binds only to an existing PersistentVolume'
        )
    elif classes is not None and _no_such_class(storage_class, classes):
        which = "no default StorageClass" if storage_class is None else f"no StorageClass {storage_class}"
        has = f"it has {', '.join(sorted(classes))}" if classes else "it has none"
        text = (
            f"PersistentVolumeClaim {name} is {phase}: the cluster has {which} ({has}); "
            "name one of its classes in storageClassName"
        )
    else:
        defaults = [n for n, default in (classes or {}).items() if default]
        shown = storage_class if storage_class is not None else ", ".join(defaults) or "the cluster's default"
        text = f"PersistentVolumeClaim {name} is {phase} (storage class {shown})"
    warnings = [e for e in events if e.get("type") == "Warning"] or list(events)
    if warnings:
        latest = warnings[-1]
        text += f"; its latest event: {latest.get('reason', '?')}: {str(latest.get('message', '')).strip()}"
    return text


def _no_such_class(storage_class: str | None, classes: Mapping[str, bool]) -> bool:
    """The claim's class (or, naming none, a default one) is not among the cluster's classes."""
    return not any(classes.values()) if storage_class is None else storage_class not in classes


def claim_problems(kube: Any, namespace: str, pod: Mapping[str, Any]) -> list[str]:
    """What keeps each claim of ``pod`` from binding, read now; empty when nothing can be read."""
    names = claim_names(pod)
    if not names:
        return []
    problems = []
    classes: dict[str, bool] | None = None
    try:
        listed = json.loads(kube.storage.list_storage_class(_preload_content=False).data).get("items") or []
        classes = {
            c["metadata"]["name"]: (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
            for c in listed
        }
    except (ApiException, OSError, HTTPError):
        pass  # not readable from this context: the claim is described without it
    for name in dict.fromkeys(names):
        try:
            claim = _read_claim(kube, namespace, name)
        except (ApiException, OSError, HTTPError):
            continue
        try:
            events, _ = list_raw(
                kube.core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.kind=PersistentVolumeClaim,involvedObject.name={name}",
            )
        except (ApiException, OSError, HTTPError):
            events = []  # a context that may not list events: the claim is described without
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        if text := describe_claim(name, claim, events, classes):
            problems.append(text)
    return problems


def _read_claim(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    claims, _ = list_raw(
        kube.core.list_namespaced_persistent_volume_claim, namespace, field_selector=f"metadata.name={name}"
    )
    return claims[0] if claims else None
