"""The environment lock: a coordination.k8s.io Lease so two releases cannot interleave.

The Lease ``deploybook-release`` in the environment's namespace names its holder
(``user@host:pid/RUN_ID``) and how long the hold is valid. A second release refuses with
the holder's identity; a Lease whose time ran out (its holder died) is taken over. The
plugin releases the lock at the end of the session, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from deploybook.errors import ClusterError, LockHeld

LEASE_NAME = "deploybook-release"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Lock:
    """A held lock: where it is, who holds it, and whose expired hold it replaced."""

    namespace: str
    holder: str
    took_over_from: str | None = None


def holder_identity(run_id: str) -> str:
    """``user@host:pid/RUN_ID``: enough for a colleague to find the process holding the lock."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}/{run_id}"


def _lease_body(namespace: str, holder: str, duration_s: int, now: datetime, version: str | None) -> dict[str, Any]:
    stamp = now.strftime(_TIME_FORMAT)
    metadata: dict[str, Any] = {
        "name": LEASE_NAME,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "deploybook"},
    }
    if version:
        metadata["resourceVersion"] = version
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration_s,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


def _expired(spec: Any, now: datetime) -> bool:
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None or not spec.lease_duration_seconds:
        return True
    if renewed.tzinfo is None:
        renewed = renewed.replace(tzinfo=UTC)
    return bool(renewed + timedelta(seconds=spec.lease_duration_seconds) < now)


def acquire_lock(
    coordination: Any, namespace: str, *, holder: str, duration_s: int, now: datetime | None = None
) -> Lock:
    """Take the Lease for ``holder``, or raise LockHeld naming whoever holds it."""
    now = now or datetime.now(UTC)
    where = f"lease {namespace}/{LEASE_NAME}"
    try:
        current = coordination.read_namespaced_lease(LEASE_NAME, namespace)
    except ApiException as e:
        if e.status != 404:
            raise ClusterError(f"cannot read the lock: {e.status} {e.reason}", source=where) from e
        return _create(coordination, namespace, holder, duration_s, now)
    spec = current.spec
    previous = spec.holder_identity
    if previous and previous != holder and not _expired(spec, now):
        raise _held(previous, spec, where)
    body = _lease_body(namespace, holder, duration_s, now, current.metadata.resource_version)
    try:
        coordination.replace_namespaced_lease(LEASE_NAME, namespace, body)
    except ApiException as e:
        if e.status == 409:
            raise LockHeld("another release took the lock at the same moment", holder="unknown", source=where,
                           hint="wait for it to finish, then run again") from e
        raise ClusterError(f"cannot take the lock: {e.status} {e.reason}", source=where) from e
    return Lock(namespace, holder, took_over_from=previous if previous and previous != holder else None)


def _create(coordination: Any, namespace: str, holder: str, duration_s: int, now: datetime) -> Lock:
    where = f"lease {namespace}/{LEASE_NAME}"
    try:
        coordination.create_namespaced_lease(namespace, _lease_body(namespace, holder, duration_s, now, None))
    except ApiException as e:
        if e.status == 409:
            raise LockHeld("another release took the lock at the same moment", holder="unknown", source=where,
                           hint="wait for it to finish, then run again") from e
        raise ClusterError(f"cannot take the lock: {e.status} {e.reason}", source=where) from e
    return Lock(namespace, holder)


def _held(previous: str, spec: Any, where: str) -> LockHeld:
    since = spec.acquire_time.isoformat() if spec.acquire_time else "an unknown time"
    return LockHeld(
        f"environment is locked by {previous} since {since} (for {spec.lease_duration_seconds}s)",
        holder=previous,
        source=where,
        hint=f"wait for that release to finish; if it is dead, delete the lease: "
        f"kubectl -n {where.split()[1].split('/')[0]} delete lease {LEASE_NAME}",
    )


def release_lock(coordination: Any, lock: Lock) -> bool:
    """Delete the Lease if ``lock.holder`` still holds it; True when it was released."""
    try:
        current = coordination.read_namespaced_lease(LEASE_NAME, lock.namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise ClusterError(f"cannot read the lock: {e.status} {e.reason}",
                           source=f"lease {lock.namespace}/{LEASE_NAME}") from e
    if current.spec.holder_identity != lock.holder:
        return False
    coordination.delete_namespaced_lease(
        LEASE_NAME,
        lock.namespace,
        body={"preconditions": {"resourceVersion": current.metadata.resource_version}},
    )
    return True
