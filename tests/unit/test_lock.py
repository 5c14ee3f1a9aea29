"""The environment lock, against an in-memory Lease API (the coordination client's seam)."""

from __future__ import annotations

import copy
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from deploybook.cluster.lock import (
    LEASE_NAME,
    LeaseRenewer,
    acquire_lock,
    holder_identity,
    holder_is_dead_here,
    release_lock,
    renew_lock,
)
from deploybook.errors import LockHeld

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeLeases:
    """The four CoordinationV1Api calls the lock uses, with resourceVersion conflicts."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0

    def _view(self, body: dict[str, Any]) -> SimpleNamespace:
        spec = body["spec"]

        def parse(stamp: str | None) -> datetime | None:
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if stamp else None

        return SimpleNamespace(
            metadata=SimpleNamespace(resource_version=body["metadata"]["resourceVersion"]),
            spec=SimpleNamespace(
                holder_identity=spec.get("holderIdentity"),
                lease_duration_seconds=spec.get("leaseDurationSeconds"),
                acquire_time=parse(spec.get("acquireTime")),
                renew_time=parse(spec.get("renewTime")),
            ),
        )

    def read_namespaced_lease(self, name: str, namespace: str) -> SimpleNamespace:
        if (namespace, name) not in self.leases:
            raise ApiException(status=404, reason="Not Found")
        return self._view(self.leases[(namespace, name)])

    def _store(self, namespace: str, body: dict[str, Any]) -> None:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.leases[(namespace, body["metadata"]["name"])] = body

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any]) -> None:
        if (namespace, body["metadata"]["name"]) in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        self._store(namespace, body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        if body["metadata"].get("resourceVersion") != self.leases[(namespace, name)]["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self._store(namespace, body)

    def delete_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        del self.leases[(namespace, name)]


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


def test_first_release_takes_the_lock(leases: FakeLeases) -> None:
    lock = acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=600, now=NOW)
    assert lock.holder == "alice@h:1/r1" and lock.took_over_from is None
    stored = leases.leases[("ns", LEASE_NAME)]
    assert stored["spec"]["holderIdentity"] == "alice@h:1/r1"
    assert stored["spec"]["leaseDurationSeconds"] == 600


def test_second_release_refused_with_holder(leases: FakeLeases) -> None:
    acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=600, now=NOW)
    with pytest.raises(LockHeld) as info:
        acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=600, now=NOW + timedelta(seconds=30))
    assert info.value.holder == "alice@h:1/r1"
    assert "alice@h:1/r1" in info.value.one_line() and "valid until 2026-01-01T12:10:00" in info.value.one_line()


def test_expired_lock_refused_without_the_flag(leases: FakeLeases) -> None:
    acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    with pytest.raises(LockHeld) as info:
        acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=60, now=NOW + timedelta(seconds=61))
    assert "expired at 2026-01-01T12:01:00" in info.value.one_line()
    assert "--take-over-lock" in info.value.one_line()


def test_expired_lock_taken_over_with_the_flag(leases: FakeLeases) -> None:
    acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    lock = acquire_lock(
        leases, "ns", holder="bob@h:2/r2", duration_s=60, take_over=True, now=NOW + timedelta(seconds=61)
    )
    assert lock.took_over_from == "alice@h:1/r1"
    assert leases.leases[("ns", LEASE_NAME)]["spec"]["holderIdentity"] == "bob@h:2/r2"


def test_fresh_lock_of_a_live_holder_is_never_taken_over(leases: FakeLeases) -> None:
    live = f"alice@{socket.gethostname()}:{os.getpid()}/r1"
    acquire_lock(leases, "ns", holder=live, duration_s=60, now=NOW)
    with pytest.raises(LockHeld) as info:
        acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=60, take_over=True, now=NOW + timedelta(seconds=30))
    assert "still being renewed" in info.value.one_line() and info.value.holder == live


def test_fresh_lock_of_a_dead_local_process_taken_over_with_the_flag(leases: FakeLeases) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = f"alice@{socket.gethostname()}:{dead.pid}/r1"
    acquire_lock(leases, "ns", holder=holder, duration_s=600, now=NOW)
    with pytest.raises(LockHeld):
        acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=600, now=NOW + timedelta(seconds=5))
    lock = acquire_lock(
        leases, "ns", holder="bob@h:2/r2", duration_s=600, take_over=True, now=NOW + timedelta(seconds=5)
    )
    assert lock.took_over_from == holder


@pytest.mark.parametrize(
    ("holder", "dead"),
    [("a@elsewhere:1/r", False), ("garbled", False), ("a@HOST:notapid/r", False), ("a@HOST:PID/r", False)],
)
def test_only_a_missing_local_pid_counts_as_dead(holder: str, dead: bool) -> None:
    holder = holder.replace("HOST", socket.gethostname()).replace("PID", str(os.getpid()))
    assert holder_is_dead_here(holder) is dead


def test_renewal_moves_renew_time_and_keeps_acquire_time(leases: FakeLeases) -> None:
    lock = acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    assert renew_lock(leases, lock, now=NOW + timedelta(seconds=50)) is True
    spec = leases.leases[("ns", LEASE_NAME)]["spec"]
    assert spec["acquireTime"].startswith("2026-01-01T12:00:00") and spec["renewTime"].startswith("2026-01-01T12:00:50")
    with pytest.raises(LockHeld):  # renewed at :50, so still fresh at :61
        acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=60, take_over=True, now=NOW + timedelta(seconds=61))


def test_renewal_reports_a_lost_lease(leases: FakeLeases) -> None:
    mine = acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=60, take_over=True, now=NOW + timedelta(seconds=61))
    assert renew_lock(leases, mine) is False


def test_renewer_thread_renews_until_stopped_and_survives_api_errors(leases: FakeLeases) -> None:
    lock = acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60)
    real_read, calls = leases.read_namespaced_lease, [0]

    def flaky_read(name: str, namespace: str) -> SimpleNamespace:
        calls[0] += 1
        if calls[0] == 1:  # the API server restarting
            raise ApiException(status=503, reason="Service Unavailable")
        return real_read(name, namespace)

    leases.read_namespaced_lease = flaky_read  # type: ignore[method-assign]
    renewer = LeaseRenewer(leases, lock, interval_s=0.05)
    renewer.start()
    deadline = time.monotonic() + 5
    while renewer.renewals < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    renewer.stop()
    assert renewer.renewals >= 2 and not renewer.lost and not renewer.is_alive()
    assert LeaseRenewer(leases, lock).interval_s == 20.0


def test_release_frees_only_our_own_lock(leases: FakeLeases) -> None:
    mine = acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    stolen = acquire_lock(
        leases, "ns", holder="bob@h:2/r2", duration_s=60, take_over=True, now=NOW + timedelta(seconds=61)
    )
    assert release_lock(leases, mine) is False
    assert ("ns", LEASE_NAME) in leases.leases
    assert release_lock(leases, stolen) is True
    assert ("ns", LEASE_NAME) not in leases.leases
    acquire_lock(leases, "ns", holder="carol@h:3/r3", duration_s=60, now=NOW)


def test_holder_identity_names_user_host_pid_run() -> None:
    identity = holder_identity("20260101T000000Z-abc")
    assert identity.endswith("/20260101T000000Z-abc") and "@" in identity and ":" in identity


class ForbiddenLeases(FakeLeases):
    """A read-only identity: every Lease call is refused with 403."""

    def read_namespaced_lease(self, name: str, namespace: str) -> SimpleNamespace:
        raise ApiException(status=403, reason="Forbidden")


def test_refused_lock_names_the_server_and_context() -> None:
    from deploybook.errors import ClusterError

    where = "server https://10.0.0.1:6443, context deploybook-view"
    with pytest.raises(ClusterError) as info:
        acquire_lock(ForbiddenLeases(), "dx29", holder="a@h:1/r", duration_s=60, now=NOW, cluster=where)
    text = info.value.one_line()
    assert "context deploybook-view" in text and "server https://10.0.0.1:6443" in text
    assert "HTTP 403 Forbidden" in text and f"lease dx29/{LEASE_NAME}" in text
