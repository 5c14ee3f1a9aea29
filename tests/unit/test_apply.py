"""Diff and server-side apply, with a fake at the dynamic-resource seam.

``FakeResource`` stands where ``DynamicClient.resources.get(...)`` returns a
resource: it answers ``get`` and ``server_side_apply`` like an API server would
in the ways that matter here (defaults added, server-set metadata, dry-run,
404 for a missing namespace, 422 for an invalid object), and records the calls.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError, api_exception

from deploybook.errors import ApplyError
from deploybook.manifests.apply import (
    apply_objects,
    apply_order,
    diff_objects,
    ensure_namespace,
)
from deploybook.manifests.pull_secret import ensure_pull_secret

NS = "dx29-test"
IMAGE = "localhost:5000/dx29/gateway@sha256:" + "a" * 64
CLUSTER_SCOPED = {"Namespace", "ClusterIssuer"}


def api_error(status: int, message: str, details: dict[str, Any] | None = None) -> Exception:
    body = json.dumps({"kind": "Status", "status": "Failure", "message": message, "details": details or {}})
    error = ApiException(status=status, reason="Failure")
    error.body = body  # as the client sets it from the response
    return api_exception(error)


class Instance:
    """What the dynamic client returns: something with ``to_dict()``."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self._obj = copy.deepcopy(obj)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._obj)


def merge(live: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Fields of ``body`` over ``live``; lists replaced (enough for these tests)."""
    out = copy.deepcopy(live)
    for key, value in body.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def add_defaults(obj: dict[str, Any]) -> None:
    """Defaults a real API server adds, so an honest diff must not show them."""
    if obj["kind"] == "Deployment":
        obj["spec"].setdefault("progressDeadlineSeconds", 600)
        obj["spec"]["template"]["spec"].setdefault("restartPolicy", "Always")
        obj["status"] = {"replicas": 1}
    if obj["kind"] == "Service":
        obj["spec"].setdefault("clusterIP", "10.96.0.42")
        obj["spec"].setdefault("type", "ClusterIP")


def content(obj: dict[str, Any]) -> dict[str, Any]:
    """What the fake server compares to decide whether a write changes anything."""
    metadata = {k: v for k, v in obj["metadata"].items() if k not in ("managedFields", "resourceVersion")}
    return {**obj, "metadata": metadata}


@dataclass
class FakeCluster:
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str, str | None]] = field(default_factory=list)  # verb, kind, name, dryRun
    reject: Callable[[dict[str, Any]], str | None] = lambda obj: None
    fail_for_real: str | None = None  # kind whose real (non dry-run) apply fails
    version: int = 0

    def namespace_exists(self, name: str | None) -> bool:
        return ("Namespace", None, name or "") in self.objects


@dataclass
class FakeResource:
    cluster: FakeCluster
    api_version: str
    kind: str

    @property
    def namespaced(self) -> bool:
        return self.kind not in CLUSTER_SCOPED

    def get(self, name: str, namespace: str | None = None) -> Instance:
        self.cluster.calls.append(("get", self.kind, name, None))
        obj = self.cluster.objects.get((self.kind, namespace, name))
        if obj is None:
            raise api_error(404, f'{self.kind.lower()}s "{name}" not found')
        return Instance(obj)

    def server_side_apply(self, *, body: dict[str, Any], name: str, namespace: str | None, field_manager: str,
                          force_conflicts: bool, dry_run: str | None) -> Instance:  # fmt: skip
        assert field_manager == "deploybook" and force_conflicts is True
        self.cluster.calls.append(("apply", self.kind, name, dry_run))
        if self.namespaced and not self.cluster.namespace_exists(namespace):
            raise api_error(404, f'namespaces "{namespace}" not found', {"name": namespace, "kind": "namespaces"})
        message = self.cluster.reject(body)
        if message:
            raise api_error(422, message)
        live_job = self.cluster.objects.get((self.kind, namespace, name)) if self.kind == "Job" else None
        if live_job is not None and live_job["spec"]["template"] != body["spec"]["template"]:
            message = f'Job.batch "{name}" is invalid: spec.template: Invalid value: "...": field is immutable'
            raise api_error(422, message)
        live_pod = self.cluster.objects.get((self.kind, namespace, name)) if self.kind == "Pod" else None
        if live_pod is not None and _without_images(live_pod["spec"]) != _without_images(body["spec"]):
            message = f'Pod "{name}" is invalid: spec: Forbidden: pod updates may not change fields other than ...'
            raise api_error(422, message)
        if dry_run is None and self.cluster.fail_for_real == self.kind:
            raise api_error(500, "etcdserver: request timed out")
        key = (self.kind, namespace, name)
        live = self.cluster.objects.get(key)
        result = merge(live or {}, body)
        add_defaults(result)
        metadata = result["metadata"]
        metadata.setdefault("uid", f"uid-{name}")
        metadata.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.cluster.version += 1
        # A fresh timestamp on every answer: only a diff that ignores managedFields stays empty.
        metadata["managedFields"] = [{"manager": field_manager, "operation": "Apply", "time": self.cluster.version}]
        if live is None or content(live) != content(result):
            self.cluster.version += 1
            metadata["resourceVersion"] = str(self.cluster.version)
        if dry_run is None:
            self.cluster.objects[key] = result
        return Instance(result)

    def create(self, *, body: dict[str, Any], namespace: str | None, field_manager: str, dry_run: str) -> Instance:
        assert dry_run == "All", "only the dry-run of a Job or Pod run again creates"
        self.cluster.calls.append(("create", self.kind, body["metadata"]["generateName"], dry_run))
        return Instance({**body, "metadata": {**body["metadata"], "name": body["metadata"]["generateName"] + "x1"}})

    def delete(self, *, name: str, namespace: str | None, body: dict[str, Any]) -> None:
        self.cluster.calls.append(("delete", self.kind, name, None))
        live = self.cluster.objects[(self.kind, namespace, name)]
        assert body == {"propagationPolicy": "Foreground", "preconditions": {"uid": live["metadata"]["uid"]}}
        del self.cluster.objects[(self.kind, namespace, name)]


def _without_images(spec: dict[str, Any]) -> dict[str, Any]:
    """A Pod's spec but for its containers' images: what a live Pod may not change."""
    return {**spec, "containers": [{k: v for k, v in c.items() if k != "image"} for c in spec.get("containers", [])]}


@dataclass
class FakeResources:
    cluster: FakeCluster

    def get(self, *, api_version: str, kind: str) -> FakeResource:
        if kind == "Widget":
            raise ResourceNotFoundError(f"No matches found for {{'api_version': '{api_version}', 'kind': '{kind}'}}")
        return FakeResource(self.cluster, api_version, kind)


@dataclass
class FakeDynamic:
    resources: FakeResources


@dataclass
class FakeKube:
    """Only what apply.py touches of KubeClients."""

    dynamic: FakeDynamic
    where: str = "server https://127.0.0.1:6443, context deploybook-admin"


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.objects[("Namespace", None, NS)] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    return c


@pytest.fixture
def kube(cluster: FakeCluster) -> Any:
    return FakeKube(FakeDynamic(FakeResources(cluster)))


def deployment(image: str = IMAGE, namespace: str = NS) -> dict[str, Any]:
    labels = {"app": "dx29-gateway-backend"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "dx29-gateway-deployment", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "gateway", "image": image}]},
            },
        },
    }


def service(namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dx29-gateway", "namespace": namespace},
        "spec": {"selector": {"app": "dx29-gateway-backend"}, "ports": [{"port": 80}]},
    }


def config_map(namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"LOG_LEVEL": "info"},
    }


def secret(value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "secret-appsettings", "namespace": NS},
        "data": {"password": base64.b64encode(value.encode()).decode()},
    }


def real_applies(cluster: FakeCluster) -> list[str]:
    return [kind for verb, kind, _, dry in cluster.calls if verb == "apply" and dry is None]


def test_apply_order_by_kind_stable_unknown_last() -> None:
    second = {**service(), "metadata": {"name": "second"}}
    objs = [deployment(), {"kind": "Widget", "metadata": {"name": "w"}}, service(), config_map(),
            {"kind": "Namespace", "metadata": {"name": "x"}}, second]  # fmt: skip
    ordered = [(o["kind"], o["metadata"]["name"]) for o in apply_order(objs)]
    assert ordered == [("Namespace", "x"), ("ConfigMap", "settings"), ("Service", "dx29-gateway"),
                       ("Service", "second"), ("Deployment", "dx29-gateway-deployment"), ("Widget", "w")]  # fmt: skip


def test_first_apply_creates_in_kind_order_after_validating_all(kube: Any, cluster: FakeCluster) -> None:
    results = apply_objects(kube, [deployment(), service(), config_map()])
    assert [(r.kind, r.action, r.dry_run) for r in results] == [
        ("ConfigMap", "created", False),
        ("Service", "created", False),
        ("Deployment", "created", False),
    ]
    applies = [(kind, dry) for verb, kind, _, dry in cluster.calls if verb == "apply"]
    # every object is dry-run before the first one is applied for real
    assert applies == [("ConfigMap", "All"), ("Service", "All"), ("Deployment", "All"),
                       ("ConfigMap", None), ("Service", None), ("Deployment", None)]  # fmt: skip
    assert results[2].uid == "uid-dx29-gateway-deployment"
    assert results[2].resource_version


def test_second_apply_is_a_clean_no_op_despite_server_defaults(kube: Any, cluster: FakeCluster) -> None:
    objs = [deployment(), service(), config_map()]
    apply_objects(kube, objs)
    assert "progressDeadlineSeconds" in str(cluster.objects[("Deployment", NS, "dx29-gateway-deployment")])
    diffs = diff_objects(kube, objs)
    assert [(d.kind, d.action, d.diff) for d in diffs] == [
        ("ConfigMap", "unchanged", ""),
        ("Service", "unchanged", ""),
        ("Deployment", "unchanged", ""),
    ]
    assert not any(d.changed for d in diffs)
    assert {r.action for r in apply_objects(kube, objs)} == {"unchanged"}


def test_changed_image_shows_in_the_diff_and_is_configured(kube: Any, cluster: FakeCluster) -> None:
    apply_objects(kube, [deployment()])
    new_image = IMAGE.replace("a" * 64, "b" * 64)
    (diff,) = diff_objects(kube, [deployment(new_image)])
    assert diff.action == "update"
    assert f"-      - image: {IMAGE}" in diff.diff
    assert f"+      - image: {new_image}" in diff.diff
    assert diff.diff.startswith(f"--- live/Deployment/{NS}/dx29-gateway-deployment\n")
    assert "managedFields" not in diff.diff and "resourceVersion" not in diff.diff
    assert "status" not in diff.diff
    (result,) = apply_objects(kube, [deployment(new_image)])
    assert result.action == "configured"
    assert new_image in str(cluster.objects[("Deployment", NS, "dx29-gateway-deployment")])


def test_diff_of_an_absent_object_is_a_create(kube: Any) -> None:
    (diff,) = diff_objects(kube, [service()])
    assert diff.action == "create"
    assert diff.diff.startswith("--- /dev/null\n+++ release/Service/")
    assert "+  clusterIP: 10.96.0.42\n" in diff.diff  # what the server would store, defaults included


def test_dry_run_changes_nothing(kube: Any, cluster: FakeCluster) -> None:
    before = copy.deepcopy(cluster.objects)
    results = apply_objects(kube, [deployment(), service()], dry_run=True)
    assert [(r.action, r.dry_run, r.uid) for r in results] == [
        ("created", True, None),
        ("created", True, None),
    ]
    assert cluster.objects == before
    assert real_applies(cluster) == []


def test_one_rejected_object_means_nothing_applied(kube: Any, cluster: FakeCluster) -> None:
    def reject(obj: dict[str, Any]) -> str | None:
        if obj["kind"] == "Deployment":
            return 'Deployment.apps "dx29-gateway-deployment" is invalid: spec.replicas: Invalid value: -1'
        if obj["kind"] == "ConfigMap":
            return 'ConfigMap "settings" is invalid: data[LOG LEVEL]: Invalid value'
        return None

    cluster.reject = reject
    with pytest.raises(ApplyError) as info:
        apply_objects(kube, [service(), deployment(), config_map()])
    message = str(info.value)
    assert "rejected 2 objects" in message
    assert f"Deployment/dx29-gateway-deployment -n {NS}: Deployment.apps" in message
    assert "spec.replicas: Invalid value: -1 (HTTP 422)" in message
    assert f"ConfigMap/settings -n {NS}" in message
    assert "nothing was applied" in message
    assert "context deploybook-admin" in message
    assert real_applies(cluster) == []
    assert ("Service", NS, "dx29-gateway") not in cluster.objects


def test_missing_namespace_is_an_error_unless_dry_run(kube: Any, cluster: FakeCluster) -> None:
    with pytest.raises(ApplyError, match=r"namespace elsewhere does not exist.*ensure_namespace"):
        apply_objects(kube, [service("elsewhere")])
    (planned,) = apply_objects(kube, [service("elsewhere")], dry_run=True)
    assert (planned.action, planned.validated) == ("created", False)
    (diff,) = diff_objects(kube, [service("elsewhere")])
    assert (diff.action, diff.validated) == ("create", False)
    assert real_applies(cluster) == []


def test_namespace_of_the_batch_is_applied_before_the_rest_is_validated(kube: Any, cluster: FakeCluster) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}}
    results = apply_objects(kube, [service("fresh"), namespace])
    assert [(r.kind, r.action) for r in results] == [("Namespace", "created"), ("Service", "created")]
    assert ("Service", "fresh", "dx29-gateway") in cluster.objects


def test_unknown_kind_is_named(kube: Any, cluster: FakeCluster) -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": NS}}
    with pytest.raises(ApplyError, match=r"Widget/w .*serves no kind Widget in example\.com/v1"):
        apply_objects(kube, [service(), widget])
    assert real_applies(cluster) == []


def test_a_custom_kind_the_cluster_calls_cluster_scoped_is_refused(kube: Any, cluster: FakeCluster) -> None:
    # Rendering gave it the namespace: its kind is not one the renderer knows to be cluster-scoped.
    issuer = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "ca", "namespace": NS}}
    for run in (lambda: diff_objects(kube, [service(), issuer]), lambda: apply_objects(kube, [service(), issuer])):
        with pytest.raises(ApplyError) as info:
            run()
        assert f"ClusterIssuer/ca is cluster-scoped: a release of this environment stays in namespace {NS}" in str(
            info.value
        )
        assert "confinement: {cluster_scoped: [ClusterIssuer/ca]}" in str(info.value)
    assert real_applies(cluster) == []
    allowed = {**issuer, "metadata": {"name": "ca"}}  # allowed by name: rendered without a namespace
    assert [a.action for a in apply_objects(kube, [allowed])] == ["created"]


def test_failure_during_the_real_apply_names_what_was_applied(kube: Any, cluster: FakeCluster) -> None:
    cluster.fail_for_real = "Deployment"
    with pytest.raises(ApplyError) as info:
        apply_objects(kube, [deployment(), service()])
    assert "Deployment/dx29-gateway-deployment" in str(info.value)
    assert "etcdserver: request timed out (HTTP 500)" in str(info.value)
    assert "already applied: Service/dx29-gateway" in str(info.value)


def test_secret_values_never_show_in_a_diff(kube: Any) -> None:
    apply_objects(kube, [secret("hunter2")])
    (same,) = diff_objects(kube, [secret("hunter2")])
    assert same.action == "unchanged"
    (changed,) = diff_objects(kube, [secret("correct horse")])
    assert changed.action == "update"
    for plain in ("hunter2", "correct horse"):
        assert plain not in changed.diff
        assert base64.b64encode(plain.encode()).decode() not in changed.diff
    for plain, sign in (("hunter2", "-"), ("correct horse", "+")):
        sha = hashlib.sha256(plain.encode()).hexdigest()
        assert f"{sign}  password: <redacted sha256:{sha}, {len(plain)} bytes>" in changed.diff


class Credentials:
    username = "deploybook"
    password = "s3cret-pw"


def test_pull_secret_is_a_dockerconfigjson_secret(kube: Any, cluster: FakeCluster) -> None:
    result = ensure_pull_secret(kube, NS, "deploybook-registry", "localhost:5000", Credentials())
    assert (result.kind, result.name, result.action) == ("Secret", "deploybook-registry", "created")
    assert "s3cret-pw" not in repr(result)
    stored = cluster.objects[("Secret", NS, "deploybook-registry")]
    assert stored["type"] == "kubernetes.io/dockerconfigjson"
    config = json.loads(base64.b64decode(stored["data"][".dockerconfigjson"]))
    entry = config["auths"]["localhost:5000"]
    assert (entry["username"], entry["password"]) == ("deploybook", "s3cret-pw")
    assert base64.b64decode(entry["auth"]).decode() == "deploybook:s3cret-pw"
    again = ensure_pull_secret(kube, NS, "deploybook-registry", "localhost:5000", Credentials())
    assert again.action == "unchanged"


def test_a_switch_to_recreate_that_apply_cannot_make_names_the_one_patch_that_does(
    kube: Any, cluster: FakeCluster
) -> None:
    cluster.reject = lambda obj: (
        'Deployment.apps "dx29-gateway-deployment" is invalid: spec.strategy.rollingUpdate: Forbidden: '
        "may not be specified when strategy `type` is 'Recreate'"
        if obj["kind"] == "Deployment"
        else None
    )
    with pytest.raises(ApplyError) as info:
        apply_objects(kube, [deployment()])
    message = str(info.value)
    assert "server-side apply cannot remove" in message
    assert f"kubectl patch deployment dx29-gateway-deployment -n {NS} --type=merge" in message
    assert '"rollingUpdate":null' in message and real_applies(cluster) == []


def test_pull_secret_rejection_does_not_leak_the_password(kube: Any, cluster: FakeCluster) -> None:
    cluster.reject = lambda obj: 'Secret "deploybook-registry" is invalid: type: Invalid value: field is immutable'
    with pytest.raises(ApplyError) as info:
        ensure_pull_secret(kube, NS, "deploybook-registry", "localhost:5000", Credentials())
    assert "field is immutable" in str(info.value)
    assert "s3cret-pw" not in str(info.value)
    assert base64.b64encode(b"deploybook:s3cret-pw").decode() not in str(info.value)


def test_ensure_namespace_creates_once_and_respects_dry_run(kube: Any, cluster: FakeCluster) -> None:
    assert ensure_namespace(kube, NS).action == "unchanged"
    assert real_applies(cluster) == []
    planned = ensure_namespace(kube, "new-ns", dry_run=True)
    assert (planned.action, planned.dry_run) == ("created", True)
    assert not cluster.namespace_exists("new-ns")
    created = ensure_namespace(kube, "new-ns")
    assert created.action == "created"
    labels = cluster.objects[("Namespace", None, "new-ns")]["metadata"]["labels"]
    assert labels == {"app.kubernetes.io/managed-by": "deploybook"}


def test_ensure_namespace_refuses_a_terminating_namespace(kube: Any, cluster: FakeCluster) -> None:
    cluster.objects[("Namespace", None, "going")] = {
        "kind": "Namespace",
        "metadata": {"name": "going"},
        "status": {"phase": "Terminating"},
    }
    with pytest.raises(ApplyError, match="namespace going is being deleted"):
        ensure_namespace(kube, "going")


def _refused_connection() -> Exception:
    import urllib3

    reason = urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"
    )  # type: ignore[arg-type]
    return urllib3.exceptions.MaxRetryError(None, "/apis/apps/v1", reason)  # type: ignore[arg-type]


def test_api_server_lost_mid_apply_is_one_cluster_error_naming_the_server(
    cluster: FakeCluster, kube: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib3

    from deploybook.errors import ClusterError

    def lost(self: FakeResource, **kwargs: Any) -> Instance:
        raise _refused_connection()

    monkeypatch.setattr(FakeResource, "server_side_apply", lost)
    with pytest.raises(ClusterError) as info:
        apply_objects(kube, [deployment()])
    text = info.value.one_line()
    assert "API server unreachable while applying Deployment/dx29-gateway-deployment" in text
    assert "connection refused" in text and "server https://127.0.0.1:6443, context deploybook-admin" in text
    assert "MaxRetryError" not in text and isinstance(info.value.__cause__, urllib3.exceptions.MaxRetryError)


def test_api_server_lost_while_diffing_is_a_cluster_error(
    cluster: FakeCluster, kube: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deploybook.errors import ClusterError

    def lost(self: FakeResource, name: str, namespace: str | None = None) -> Instance:
        raise _refused_connection()

    monkeypatch.setattr(FakeResource, "get", lost)
    with pytest.raises(ClusterError, match="API server unreachable while diffing"):
        diff_objects(kube, [deployment()])


def job(image: str = IMAGE, release: str = "r1") -> dict[str, Any]:
    template = {
        "metadata": {"annotations": {"deploybook.io/release-id": release}},
        "spec": {"containers": [{"name": "migrate", "image": image}], "restartPolicy": "Never"},
    }
    metadata = {"name": "migrate", "namespace": NS}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": {"template": template}}


def test_a_finished_job_of_an_earlier_release_is_deleted_and_created_again(kube: Any, cluster: FakeCluster) -> None:
    apply_objects(kube, [job(release="r1")])
    key = ("Job", NS, "migrate")
    cluster.objects[key]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    cluster.calls.clear()
    [planned] = diff_objects(kube, [job(release="r2")])
    assert planned.action == "update" and planned.validated  # validated by a dry-run create
    assert ("create", "Job", "migrate-", "All") in cluster.calls and not any(c[0] == "delete" for c in cluster.calls)
    cluster.calls.clear()
    [applied] = apply_objects(kube, [job(release="r2")], validated=True)
    assert applied.action == "replaced"
    assert [c[0] for c in cluster.calls if c[0] != "get"] == ["apply", "delete", "apply"]
    assert cluster.objects[key]["spec"]["template"]["metadata"]["annotations"]["deploybook.io/release-id"] == "r2"


def test_a_job_still_running_is_refused_by_name_and_nothing_is_deleted(kube: Any, cluster: FakeCluster) -> None:
    apply_objects(kube, [job(release="r1")])
    cluster.objects[("Job", NS, "migrate")]["status"] = {"active": 1}
    cluster.calls.clear()
    with pytest.raises(ApplyError) as info:
        apply_objects(kube, [job(release="r2")])
    text = str(info.value)
    assert "Job/migrate -n dx29-test of an earlier release is still running" in text, text
    assert "kubectl wait --for=condition=complete job/migrate -n dx29-test" in text, text
    assert not [c for c in cluster.calls if c[0] in ("delete", "create") or (c[0] == "apply" and c[3] is None)]


def bare_pod(image: str = IMAGE, release: str = "r1", command: str = "seed") -> dict[str, Any]:
    metadata = {"name": "seed", "namespace": NS, "annotations": {"deploybook.io/release-id": release}}
    containers = [{"name": "seed", "image": image, "command": [command]}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": containers}}


def _pod_in(cluster: FakeCluster, phase: str) -> None:
    cluster.objects[("Pod", NS, "seed")]["status"] = {"phase": phase}
    cluster.calls.clear()


def deleted(cluster: FakeCluster) -> list[str]:
    return [name for verb, _, name, _ in cluster.calls if verb == "delete"]


@pytest.mark.parametrize("change", [{"release": "r2"}, {"command": "seed --again"}], ids=["in-place", "refused"])
def test_an_ended_bare_pod_whose_rendering_changed_is_deleted_and_created_again(
    kube: Any, cluster: FakeCluster, change: dict[str, str]
) -> None:
    """Updated in place, an ended Pod would not run again; a spec change the server refuses
    (a command) is a replacement too."""
    apply_objects(kube, [bare_pod()])
    _pod_in(cluster, "Failed")
    [planned] = diff_objects(kube, [bare_pod(**change)])
    assert planned.action == "update" and planned.validated and deleted(cluster) == []
    _pod_in(cluster, "Failed")
    [applied] = apply_objects(kube, [bare_pod(**change)], validated=True)
    assert applied.action == "replaced" and deleted(cluster) == ["seed"]
    assert "status" not in cluster.objects[("Pod", NS, "seed")]  # a new Pod, not the ended one changed


def test_an_ended_bare_pod_of_an_unchanged_service_is_left_as_it_is(kube: Any, cluster: FakeCluster) -> None:
    apply_objects(kube, [bare_pod()])
    _pod_in(cluster, "Succeeded")
    [applied] = apply_objects(kube, [bare_pod()], validated=True)
    assert applied.action == "unchanged" and deleted(cluster) == []
    assert cluster.objects[("Pod", NS, "seed")]["status"] == {"phase": "Succeeded"}


def test_a_running_bare_pod_takes_a_new_image_in_place_and_a_refused_change_names_it(
    kube: Any, cluster: FakeCluster
) -> None:
    apply_objects(kube, [bare_pod()])
    _pod_in(cluster, "Running")
    [applied] = apply_objects(kube, [bare_pod(image=IMAGE + "-2")], validated=True)
    assert applied.action == "configured" and deleted(cluster) == []  # the kubelet restarts it on the new image
    with pytest.raises(ApplyError) as info:
        apply_objects(kube, [bare_pod(command="seed --again")])
    text = str(info.value)
    assert "Pod/seed -n dx29-test of an earlier release is still running" in text, text
    assert "kubectl delete pod seed -n dx29-test" in text, text
    [container] = cluster.objects[("Pod", NS, "seed")]["spec"]["containers"]
    assert deleted(cluster) == [] and container["image"] == IMAGE + "-2"
