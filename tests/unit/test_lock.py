"""The environment lock, against an in-memory Lease API (the coordination client's seam)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from deploybook.errors import LockHeld
from deploybook.lock import LEASE_NAME, acquire_lock, holder_identity, release_lock

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
            spec=SimpleNamespace(holder_identity=spec.get("holderIdentity"),
                                 lease_duration_seconds=spec.get("leaseDurationSeconds"),
                                 acquire_time=parse(spec.get("acquireTime")), renew_time=parse(spec.get("renewTime"))),
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
    assert "alice@h:1/r1" in info.value.one_line() and "delete lease" in info.value.one_line()


def test_expired_lock_taken_over(leases: FakeLeases) -> None:
    acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    lock = acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=60, now=NOW + timedelta(seconds=61))
    assert lock.took_over_from == "alice@h:1/r1"


def test_release_frees_only_our_own_lock(leases: FakeLeases) -> None:
    mine = acquire_lock(leases, "ns", holder="alice@h:1/r1", duration_s=60, now=NOW)
    stolen = acquire_lock(leases, "ns", holder="bob@h:2/r2", duration_s=60, now=NOW + timedelta(seconds=61))
    assert release_lock(leases, mine) is False
    assert ("ns", LEASE_NAME) in leases.leases
    assert release_lock(leases, stolen) is True
    assert ("ns", LEASE_NAME) not in leases.leases
    acquire_lock(leases, "ns", holder="carol@h:3/r3", duration_s=60, now=NOW)


def test_holder_identity_names_user_host_pid_run() -> None:
    identity = holder_identity("20260101T000000Z-abc")
    assert identity.endswith("/20260101T000000Z-abc") and "@" in identity and ":" in identity
