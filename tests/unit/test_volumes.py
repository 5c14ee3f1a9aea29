"""deploybook.verify.volumes: the claims that keep a pod from being placed, and why."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from deploybook.verify.volumes import claim_names, claim_problems, describe_claim

POD = {
    "metadata": {"name": "web-1"},
    "spec": {
        "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
            {"name": "config", "configMap": {"name": "web-config"}},
        ]
    },
}
FAILED_BINDING = {
    "type": "Warning",
    "reason": "FailedBinding",
    "message": "no persistent volumes available for this claim and no storage class is set",
}


def pending(storage_class: str | None = None, phase: str = "Pending") -> dict[str, Any]:
    spec = {} if storage_class is None else {"storageClassName": storage_class}
    return {"metadata": {"name": "web-data"}, "spec": spec, "status": {"phase": phase}}


def test_a_pod_mounts_its_named_claims_and_one_per_ephemeral_volume() -> None:
    assert claim_names(POD) == ["web-data", "web-1-scratch"]
    assert claim_names({"metadata": {"name": "p"}, "spec": {}}) == []


def test_no_class_and_no_default_class_says_so_with_the_claims_event() -> None:
    text = describe_claim("web-data", pending(), [FAILED_BINDING], {"local": False})
    assert text == (
        "PersistentVolumeClaim web-data is Pending: the cluster has no default StorageClass (it has local); "
        "name one of its classes in storageClassName; its latest event: FailedBinding: " + FAILED_BINDING["message"]
    )
    missing = describe_claim("web-data", pending("fast"), [], {})
    assert missing == (
        "PersistentVolumeClaim web-data is Pending: the cluster has no StorageClass fast (it has none); "
        "name one of its classes in storageClassName"
    )


def test_the_class_a_claim_waits_for_is_named_with_the_latest_warning() -> None:
    events = [
        {"type": "Normal", "reason": "Provisioning", "message": "External provisioner is provisioning volume"},
        {"type": "Warning", "reason": "ProvisioningFailed", "message": "quota exceeded"},
        {"type": "Normal", "reason": "ExternalProvisioning", "message": "waiting for a volume to be created"},
    ]
    text = describe_claim("web-data", pending("fast-ssd"), events, {"standard": True, "fast-ssd": False})
    assert text == (
        "PersistentVolumeClaim web-data is Pending (storage class fast-ssd); "
        "its latest event: ProvisioningFailed: quota exceeded"
    )
    assert "(storage class standard)" in (describe_claim("web-data", pending(), [], {"standard": True}) or "")
    assert "(storage class the cluster's default)" in (describe_claim("web-data", pending(), [], None) or "")


def test_an_empty_class_a_missing_claim_and_a_lost_one_each_say_what_they_are() -> None:
    assert "binds only to an existing PersistentVolume" in (describe_claim("web-data", pending(""), [], {}) or "")
    assert describe_claim("web-data", None, [], {}) == (
        "PersistentVolumeClaim web-data does not exist: add it to the manifests or fix the claimName"
    )
    lost = pending("standard", "Lost")
    lost["spec"]["volumeName"] = "pv-7"
    assert (
        describe_claim("web-data", lost, [], {})
        == "PersistentVolumeClaim web-data is Lost: its PersistentVolume pv-7 is gone"
    )
    assert describe_claim("web-data", pending("standard", "Bound"), [], {}) is None


class Answer:
    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body).encode()


class FakeKube:
    """The API answers claim_problems reads: claims by name, their events, StorageClasses."""

    def __init__(self, claims: dict[str, Any], classes: list[Any] | None, events: bool = True) -> None:
        self.asked: list[tuple[str, str]] = []
        kube = self

        class Core:
            def list_namespaced_persistent_volume_claim(self, ns: str, **kw: Any) -> Answer:
                name = kw["field_selector"].removeprefix("metadata.name=")
                kube.asked.append(("claim", name))
                return Answer({"items": [claims[name]] if name in claims else [], "metadata": {}})

            def list_namespaced_event(self, ns: str, **kw: Any) -> Answer:
                kube.asked.append(("events", kw["field_selector"]))
                if not events:
                    raise ApiException(status=403, reason="Forbidden")
                return Answer({"items": [FAILED_BINDING], "metadata": {}})

        class Storage:
            def list_storage_class(self, **kw: Any) -> Answer:
                if classes is None:
                    raise ApiException(status=403, reason="Forbidden")
                return Answer({"items": classes, "metadata": {}})

        self.core, self.storage = Core(), Storage()


def test_claim_problems_reads_each_claim_of_the_pod_once_and_its_events() -> None:
    kube = FakeKube({"web-data": pending()}, [{"metadata": {"name": "local", "annotations": {}}}])
    problems = claim_problems(kube, "ns", POD)
    assert problems == [
        describe_claim("web-data", pending(), [FAILED_BINDING], {"local": False}),
        "PersistentVolumeClaim web-1-scratch does not exist: add it to the manifests or fix the claimName",
    ]
    assert kube.asked[:2] == [
        ("claim", "web-data"),
        ("events", "involvedObject.kind=PersistentVolumeClaim,involvedObject.name=web-data"),
    ]


def test_a_context_that_may_not_read_storage_classes_still_names_the_claim() -> None:
    problems = claim_problems(
        FakeKube({"web-data": pending()}, None), "ns", {**POD, "spec": {"volumes": POD["spec"]["volumes"][:1]}}
    )
    assert problems == [
        "PersistentVolumeClaim web-data is Pending (storage class the cluster's default); "
        "its latest event: FailedBinding: " + FAILED_BINDING["message"]
    ]


def test_a_context_that_may_not_list_events_still_names_the_claim_and_its_class() -> None:
    kube = FakeKube({"web-data": pending("fast")}, [{"metadata": {"name": "local"}}], events=False)
    assert claim_problems(kube, "ns", {**POD, "spec": {"volumes": POD["spec"]["volumes"][:1]}}) == [
        "PersistentVolumeClaim web-data is Pending: the cluster has no StorageClass fast (it has local); "
        "name one of its classes in storageClassName"
    ]
