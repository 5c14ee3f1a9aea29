"""The environment lock: a coordination.k8s.io Lease so two releases cannot interleave.

The Lease ``deploybook-release`` in the environment's namespace names its holder
(``user@host:pid/RUN_ID``) and how long the hold is valid. While a release runs, a
`LeaseRenewer` renews it every third of its duration, so a live release never loses it and a
dead one stops renewing. The plugin releases the lock at the end of the session, also after a
failure or Ctrl-C.

Who may take the lock (``take_over`` is the ``--take-over-lock`` flag):

    Lease                                     without take_over     with take_over
    absent, or held by us                     taken                 taken
    held, fresh (renewed within its duration) refused (LockHeld)    refused, unless the holder
                                                                    is a process of this host
                                                                    that no longer exists
    held, expired (its holder stopped         refused, naming the   taken over, the previous
    renewing: killed, host gone)              expiry and the flag   holder is reported

An expired lease is not taken silently: a release that stalled (a paused laptop, a cut
network) may still be applying, so a person decides. A fresh lease of a dead local process
is safe to take at once: the holder's pid is checked on the host that wrote it.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from deploybook.cluster.connect import api_errors
from deploybook.errors import ClusterError, LockHeld

LEASE_NAME = "deploybook-release"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class Lock:
    """A held lock: where it is, who holds it, and whose hold it replaced."""

    namespace: str
    holder: str
    took_over_from: str | None = None
    duration_s: int = 0


def holder_identity(run_id: str) -> str:
    """``user@host:pid/RUN_ID``: enough for a colleague to find the process holding the lock."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}/{run_id}"


def holder_is_dead_here(holder: str) -> bool:
    """True when ``holder`` names a process on this host that no longer runs."""
    try:
        host_pid = holder.split("@", 1)[1].split("/", 1)[0]
        host, pid = host_pid.rsplit(":", 1)
        number = int(pid)
    except (IndexError, ValueError):
        return False
    if host != socket.gethostname() or number <= 0:
        return False
    try:
        os.kill(number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _stamp(now: datetime) -> str:
    return now.strftime(_TIME_FORMAT)


def _lease_body(namespace: str, holder: str, duration_s: int, now: datetime, version: str | None) -> dict[str, Any]:
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
            "acquireTime": _stamp(now),
            "renewTime": _stamp(now),
        },
    }


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def lease_expiry(spec: Any) -> datetime | None:
    """When the lease runs out if not renewed (None when it carries no time or duration)."""
    renewed = spec.renew_time or spec.acquire_time
    if renewed is None or not spec.lease_duration_seconds:
        return None
    return _utc(renewed) + timedelta(seconds=spec.lease_duration_seconds)


def _expired(spec: Any, now: datetime) -> bool:
    expiry = lease_expiry(spec)
    return expiry is None or expiry < now


def acquire_lock(
    coordination: Any,
    namespace: str,
    *,
    holder: str,
    duration_s: int,
    take_over: bool = False,
    now: datetime | None = None,
    cluster: str | None = None,
) -> Lock:
    """Take the Lease for ``holder``, or raise LockHeld naming whoever holds it (see the table).

    ``cluster`` (``KubeClients.where``: server and context) is named in every error.
    """
    now = now or datetime.now(UTC)
    where = _lease_where(namespace, cluster)
    with api_errors(where, "taking the lock"):
        return _acquire(coordination, namespace, holder, duration_s, take_over, now, where)


def _acquire(
    coordination: Any, namespace: str, holder: str, duration_s: int, take_over: bool, now: datetime, where: str
) -> Lock:
    try:
        current = coordination.read_namespaced_lease(LEASE_NAME, namespace)
    except ApiException as e:
        if e.status != 404:
            raise _api_failed("read", e, where) from e
        return _create(coordination, namespace, holder, duration_s, now, where)
    spec = current.spec
    previous = spec.holder_identity
    if previous and previous != holder:
        _refuse_unless_free(previous, spec, where, now, take_over)
    body = _lease_body(namespace, holder, duration_s, now, current.metadata.resource_version)
    try:
        coordination.replace_namespaced_lease(LEASE_NAME, namespace, body)
    except ApiException as e:
        raise _write_failed(e, where) from e
    took = previous if previous and previous != holder else None
    return Lock(namespace, holder, took_over_from=took, duration_s=duration_s)


def _refuse_unless_free(previous: str, spec: Any, where: str, now: datetime, take_over: bool) -> None:
    expired = _expired(spec, now)
    if take_over and (expired or holder_is_dead_here(previous)):
        return
    if expired:
        raise _held(previous, spec, where, expired=True)
    raise _held(previous, spec, where, expired=False, asked=take_over)


def _lease_where(namespace: str, cluster: str | None) -> str:
    lease = f"lease {namespace}/{LEASE_NAME}"
    return f"{cluster}, {lease}" if cluster else lease


def _api_failed(verb: str, e: ApiException, where: str) -> ClusterError:
    """A refused or failed Lease call; a refusal says which identity lacks which right."""
    if e.status in (401, 403):
        return ClusterError(
            f"cannot {verb} the lock: HTTP {e.status} {e.reason} (this identity may not {verb} Leases "
            "in the namespace)",
            source=where,
            hint="release with a context that may write in the namespace (a read-only context "
            "such as deploybook-view is for checks only)",
        )
    return ClusterError(
        f"cannot {verb} the lock: HTTP {e.status} {e.reason}",
        source=where,
        hint="check the cluster (local stack: stack/status) and run again",
    )


def _create(coordination: Any, namespace: str, holder: str, duration_s: int, now: datetime, where: str) -> Lock:
    try:
        coordination.create_namespaced_lease(namespace, _lease_body(namespace, holder, duration_s, now, None))
    except ApiException as e:
        raise _write_failed(e, where) from e
    return Lock(namespace, holder, duration_s=duration_s)


def _write_failed(e: ApiException, where: str) -> Exception:
    if e.status == 409:
        return LockHeld(
            "another release took the lock at the same moment",
            holder="unknown",
            source=where,
            hint="wait for it to finish, then run again",
        )
    return _api_failed("write", e, where)


def _held(previous: str, spec: Any, where: str, *, expired: bool, asked: bool = False) -> LockHeld:
    since = _utc(spec.acquire_time).isoformat() if spec.acquire_time else "an unknown time"
    expiry = lease_expiry(spec)
    until = expiry.isoformat() if expiry else "an unknown time"
    if expired:
        return LockHeld(
            f"environment is locked by {previous} since {since}; the lock expired at {until} "
            f"(its release stopped renewing it)",
            holder=previous,
            source=where,
            hint="if that release is dead, run again with --take-over-lock to take the lock over",
        )
    hint = "wait for that release to finish (it renews the lock while it runs)"
    if asked:
        hint = (
            f"the lock is still being renewed, so --take-over-lock refuses until {until}; "
            "stop that release or wait for it"
        )
    return LockHeld(
        f"environment is locked by {previous} since {since} (renewed, valid until {until})",
        holder=previous,
        source=where,
        hint=hint,
    )


def renew_lock(coordination: Any, lock: Lock, *, now: datetime | None = None) -> bool:
    """Move the Lease's renewTime to now; False when ``lock.holder`` no longer holds it."""
    now = now or datetime.now(UTC)
    current = coordination.read_namespaced_lease(LEASE_NAME, lock.namespace)
    if current.spec.holder_identity != lock.holder:
        return False
    acquired = current.spec.acquire_time
    body = _lease_body(
        lock.namespace,
        lock.holder,
        lock.duration_s or current.spec.lease_duration_seconds,
        now,
        current.metadata.resource_version,
    )
    if acquired is not None:
        body["spec"]["acquireTime"] = _stamp(_utc(acquired))
    coordination.replace_namespaced_lease(LEASE_NAME, lock.namespace, body)
    return True


class LeaseRenewer(threading.Thread):
    """Renews a held lock every third of its duration until stopped.

    A failed renewal (the API server restarting, a conflict) is retried at the next tick;
    losing the lease to someone else is reported once on stderr and stops the renewals.
    """

    def __init__(
        self,
        coordination: Any,
        lock: Lock,
        *,
        interval_s: float | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="deploybook-lease-renewer", daemon=True)
        self.coordination, self.lock = coordination, lock
        self.interval_s = interval_s if interval_s is not None else max(1.0, lock.duration_s / 3)
        self.halt = threading.Event()
        self.renewals = 0
        self.lost = False
        self.warn = warn or (lambda text: sys.stderr.write(text + "\n"))

    def run(self) -> None:
        while not self.halt.wait(self.interval_s):
            try:
                if not renew_lock(self.coordination, self.lock):
                    self.lost = True
                    self.warn(
                        f"deploybook: lost the lock lease {self.lock.namespace}/{LEASE_NAME}: "
                        "another release took it over"
                    )
                    return
                self.renewals += 1
            except Exception:
                continue

    def stop(self) -> None:
        """Stop renewing (before the lock is released) and wait for the thread."""
        self.halt.set()
        if self.is_alive():
            self.join(timeout=10)


def release_lock(coordination: Any, lock: Lock) -> bool:
    """Delete the Lease if ``lock.holder`` still holds it; True when it was released."""
    try:
        current = coordination.read_namespaced_lease(LEASE_NAME, lock.namespace)
    except ApiException as e:
        if e.status == 404:
            return False
        raise ClusterError(
            f"cannot read the lock: {e.status} {e.reason}", source=f"lease {lock.namespace}/{LEASE_NAME}"
        ) from e
    if current.spec.holder_identity != lock.holder:
        return False
    coordination.delete_namespaced_lease(
        LEASE_NAME,
        lock.namespace,
        body={"preconditions": {"resourceVersion": current.metadata.resource_version}},
    )
    return True
