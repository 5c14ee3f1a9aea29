"""Whether the node a waiting pod is placed on can run it: Ready, and its kubelet alive.

Reads only (get node, get its heartbeat Lease in ``kube-node-lease``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

__all__ = ["NODE_LEASE_NAMESPACE", "node_problem", "pod_ready"]

NODE_LEASE_NAMESPACE = "kube-node-lease"


def pod_ready(pod: Mapping[str, Any]) -> bool:
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
