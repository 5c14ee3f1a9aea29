"""The release record kept in the cluster: the ConfigMap ``deploybook-release`` of a namespace.

A checks-only run from any machine reads it to know which digests should be running; a
failed release can be resumed from it; production promotes exactly what passed on test.
The ConfigMap keeps two records: ``release.json``, what should be running now (after a
rollback that is the restored release again, so checks-only compares against what runs), and
``passed-release.json``, the last release that passed (the target of the next rollback). The
record of a rolled-back attempt is kept under ``last-attempt.json``.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from deploybook.cluster.connect import KubeClients, api_errors
from deploybook.errors import RecordError
from deploybook.evidence.record import RECORD_FILE, PassedRelease, ReleaseRecord, record_from_dict

__all__ = [
    "CONFIGMAP_NAME",
    "load_from_cluster",
    "load_last_passed",
    "load_passed_history",
    "save_to_cluster",
]

PASSED_KEY = "passed-release.json"
ATTEMPT_KEY = "last-attempt.json"
HISTORY_KEY = "passed-history.json"
HISTORY_LENGTH = 20
CONFIGMAP_NAME = "deploybook-release"


def save_to_cluster(
    kube: KubeClients, namespace: str, record: ReleaseRecord, *, running: ReleaseRecord | None = None
) -> None:
    """Create or replace the ConfigMap ``deploybook-release`` holding ``record``.

    ``running`` (after a rollback: the restored release) becomes ``release.json`` and
    ``record`` is kept as ``last-attempt.json``. The last passed release is carried over.
    """
    current = running or record
    data = {RECORD_FILE: current.to_json()}
    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME}"
    with api_errors(kube.where, f"storing the release record in configmap {namespace}/{CONFIGMAP_NAME}"):
        _save(kube, namespace, record, running, data, source)


def _save(
    kube: KubeClients,
    namespace: str,
    record: ReleaseRecord,
    running: ReleaseRecord | None,
    data: dict[str, str],
    source: str,
) -> None:
    current = running or record
    try:
        passed = current if current.passed else _stored(kube, namespace, PASSED_KEY)
        if passed is not None:
            data[PASSED_KEY] = passed.to_json()
        data[HISTORY_KEY] = _history_text(kube, namespace, current if current.passed else None)
        if running is not None:
            data[ATTEMPT_KEY] = record.to_json()
        _put_configmap(kube, namespace, _configmap(namespace, current, data))
    except ApiException as e:
        raise RecordError(
            f"could not store the release record: {e.status} {e.reason}",
            source=source,
            hint="check that the identity may write ConfigMaps in the namespace",
        ) from e


def _configmap(namespace: str, record: ReleaseRecord, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "deploybook"},
            "annotations": {"deploybook.io/run-id": record.run_id, "deploybook.io/outcome": record.outcome},
        },
        "data": data,
    }


def _put_configmap(kube: KubeClients, namespace: str, body: Any) -> None:
    try:
        kube.core.replace_namespaced_config_map(CONFIGMAP_NAME, namespace, body)
    except ApiException as e:
        if e.status != 404:
            raise
        kube.core.create_namespaced_config_map(namespace, body)


def _stored(kube: KubeClients, namespace: str, key: str) -> ReleaseRecord | None:
    """The record under ``key`` of the ConfigMap, or None (no ConfigMap, no key)."""
    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME} key {key}"
    try:
        cm = kube.core.read_namespaced_config_map(CONFIGMAP_NAME, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    text = (cm.data or {}).get(key)
    if not text:
        return None
    try:
        return record_from_dict(json.loads(text), source=source)
    except ValueError as e:
        raise RecordError(f"malformed release record: {e}", source=source) from e


def _history_text(kube: KubeClients, namespace: str, passed: ReleaseRecord | None) -> str:
    """The history with ``passed`` first (when given), the oldest entries dropped."""
    entries = [e for e in load_passed_history(kube, namespace) if passed is None or e.run_id != passed.run_id]
    if passed is not None:
        entries.insert(0, PassedRelease.of(passed))
    return json.dumps([e.to_dict() for e in entries[:HISTORY_LENGTH]], indent=1, sort_keys=True) + "\n"


def load_passed_history(kube: KubeClients, namespace: str) -> list[PassedRelease]:
    """The releases that passed in ``namespace``, newest first, as its own record keeps them.

    A record stored before the history existed still counts its last passed release.
    """
    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME} key {HISTORY_KEY}"
    try:
        with api_errors(kube.where, f"reading configmap {namespace}/{CONFIGMAP_NAME}"):
            cm = kube.core.read_namespaced_config_map(CONFIGMAP_NAME, namespace)
    except ApiException as e:
        if e.status == 404:
            return []
        raise RecordError(f"could not read the release record: {e.status} {e.reason}", source=source) from e
    data = cm.data or {}
    if HISTORY_KEY not in data:
        passed = [_parse(data[k], source) for k in (RECORD_FILE, PASSED_KEY) if data.get(k)]
        return [PassedRelease.of(r) for r in {r.run_id: r for r in passed if r.passed}.values()]
    try:
        entries = json.loads(data[HISTORY_KEY])
        return [
            PassedRelease(
                e["run_id"],
                e.get("finished", ""),
                e["digests"],
                e.get("sources", {}),
                {name: tuple(dict(x) for x in pins) for name, pins in (e.get("third_party") or {}).items()},
            )
            for e in entries
        ]
    except (ValueError, KeyError, TypeError) as e:
        raise RecordError(f"malformed history of passed releases: {e}", source=source) from e


def _parse(text: str, source: str) -> ReleaseRecord:
    try:
        return record_from_dict(json.loads(text), source=source)
    except ValueError as e:
        raise RecordError(f"malformed release record: {e}", source=source) from e


def load_last_passed(kube: KubeClients, namespace: str) -> ReleaseRecord | None:
    """The last release that passed in ``namespace`` (the rollback target), or None."""
    try:
        with api_errors(kube.where, f"reading configmap {namespace}/{CONFIGMAP_NAME}"):
            passed = _stored(kube, namespace, PASSED_KEY)
    except ApiException as e:
        raise RecordError(
            f"could not read the release record: {e.status} {e.reason}",
            source=f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME}",
        ) from e
    if passed is not None:
        return passed
    current = load_from_cluster(kube, namespace)
    return current if current is not None and current.passed else None


def load_from_cluster(kube: KubeClients, namespace: str) -> ReleaseRecord | None:
    """The record kept in the cluster, or None when there is none yet."""
    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME}"
    try:
        with api_errors(kube.where, f"reading configmap {namespace}/{CONFIGMAP_NAME}"):
            cm = kube.core.read_namespaced_config_map(CONFIGMAP_NAME, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise RecordError(f"could not read the release record: {e.status} {e.reason}", source=source) from e
    text = (cm.data or {}).get(RECORD_FILE)
    if not text:
        raise RecordError(f"ConfigMap has no {RECORD_FILE}", source=source)
    try:
        return record_from_dict(json.loads(text), source=source)
    except ValueError as e:
        raise RecordError(f"malformed release record: {e}", source=source) from e
