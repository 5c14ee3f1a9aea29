"""Render, diff and server-side apply the sample app against the local stack's real cluster.

Each test works in a namespace of its own (``dbk-e2e-apply-<random>``), deleted afterwards
even when the test fails. Images are pinned to digests made up for the test and every
workload is scaled to 0: what is under test is the API server's view of the objects, not
pods running (the runbook's own end-to-end test covers that).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from deploybook.cluster.connect import KubeClients, connect
from deploybook.errors import ApplyError, ClusterError
from deploybook.manifests.apply import apply_objects, diff_objects, ensure_namespace
from deploybook.manifests.load import load_manifests
from deploybook.manifests.pull_secret import ensure_pull_secret
from deploybook.manifests.render import render_manifests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "apps" / "dx29" / "manifests"
SERVICES = ("gateway", "annotation", "terms", "worker")
LABELS = {"deploybook.io/environment": "e2e", "deploybook.io/release": "dx29"}
ANNOTATIONS = {"deploybook.io/release-id": "e2e-apply-1", "deploybook.io/git-sha": "1" * 40}
PULL_SECRET = "dx29-registry"


def stack_env() -> dict[str, str]:
    out = subprocess.run([str(ROOT / "stack" / "env")], capture_output=True, text=True, check=True).stdout
    pairs = (line.removeprefix("export ").partition("=") for line in out.splitlines())
    return {key: value.strip("'") for key, _, value in pairs}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """The local stack's client settings (stack/env)."""
    return stack_env()


@pytest.fixture(scope="module")
def kube(env: dict[str, str]) -> KubeClients:
    """Admin clients of the stack's cluster; fails naming stack/status when it is not up."""
    try:
        return connect(context="deploybook-admin", kubeconfig=env["KUBECONFIG"])
    except ClusterError as e:
        status = subprocess.run([str(ROOT / "stack" / "status")], capture_output=True, text=True, check=False)
        pytest.fail(f"the local stack's cluster is not usable: {e}\n{status.stdout}")


@pytest.fixture
def namespace_name(kube: KubeClients) -> Iterator[str]:
    """A unique namespace name; the namespace, if anything created it, is deleted afterwards."""
    name = f"dbk-e2e-apply-{secrets.token_hex(4)}"
    yield name
    try:
        kube.core.delete_namespace(name)
    except ApiException as e:
        if e.status != 404:
            raise


@pytest.fixture
def namespace(kube: KubeClients, namespace_name: str) -> str:
    """A unique namespace that exists."""
    assert ensure_namespace(kube, namespace_name).action == "created"
    return namespace_name


def digest(seed: str) -> str:
    return "sha256:" + (seed * 64)[:64]


def images(env: dict[str, str], seed: str = "a") -> dict[str, str]:
    return {f"dx29/{s}": f"{env['DEPLOYBOOK_REGISTRY']}/dx29/{s}@{digest(seed)}" for s in SERVICES}


def rendered(env: dict[str, str], namespace: str, seed: str = "a") -> list[dict[str, Any]]:
    return render_manifests(
        load_manifests(MANIFESTS),
        images=images(env, seed),
        namespace=namespace,
        labels=LABELS,
        annotations=ANNOTATIONS,
        pull_secret=PULL_SECRET,
        replicas=dict.fromkeys(SERVICES, 0),
    )


class Credentials:
    def __init__(self, env: dict[str, str]) -> None:
        self.username = env["DEPLOYBOOK_REGISTRY_USER"]
        self.password = Path(env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"]).read_text().strip()


def names_in(kube: KubeClients, namespace: str) -> dict[str, list[str]]:
    """Names of what a release could have created in the namespace."""
    listers: dict[str, Callable[..., Any]] = {
        "Deployment": kube.apps.list_namespaced_deployment,
        "Service": kube.core.list_namespaced_service,
        "Secret": kube.core.list_namespaced_secret,
    }
    return {kind: sorted(o.metadata.name for o in lister(namespace).items) for kind, lister in listers.items()}


def deploybook_apply_times(kube: KubeClients, namespace: str) -> dict[str, Any]:
    """When field manager deploybook last changed each Deployment and Service."""
    objects = [
        *kube.apps.list_namespaced_deployment(namespace).items,
        *kube.core.list_namespaced_service(namespace).items,
    ]
    return {o.metadata.name: [m.time for m in o.metadata.managed_fields if m.manager == "deploybook"] for o in objects}


def test_release_is_applied_with_its_metadata_and_again_is_a_no_op(
    kube: KubeClients, env: dict[str, str], namespace: str
) -> None:
    objs = rendered(env, namespace)
    assert ensure_pull_secret(kube, namespace, PULL_SECRET, env["DEPLOYBOOK_REGISTRY"], Credentials(env)).action == (
        "created"
    )
    assert {d.action for d in diff_objects(kube, objs)} == {"create"}

    first = apply_objects(kube, objs)
    assert [r.kind for r in first] == ["Service"] * 3 + ["Deployment"] * 4  # kind order
    assert {r.action for r in first} == {"created"}

    for name in (f"dx29-{s}-deployment" for s in SERVICES):
        deployment = kube.apps.read_namespaced_deployment(name, namespace)
        assert deployment.metadata.labels["app.kubernetes.io/managed-by"] == "deploybook"
        assert deployment.metadata.labels["deploybook.io/environment"] == "e2e"
        assert deployment.metadata.annotations["deploybook.io/release-id"] == "e2e-apply-1"
        template = deployment.spec.template
        assert template.metadata.annotations["deploybook.io/git-sha"] == "1" * 40
        assert deployment.spec.selector.match_labels == {"app": name.replace("-deployment", "-backend")}
        assert template.spec.containers[0].image.endswith(f"@{digest('a')}")
        assert [s.name for s in template.spec.image_pull_secrets] == [PULL_SECRET]
        assert deployment.spec.replicas == 0
        managers = {(m.manager, m.operation) for m in deployment.metadata.managed_fields}
        assert ("deploybook", "Apply") in managers
    service = kube.core.read_namespaced_service("dx29-gateway", namespace)
    assert service.metadata.labels["deploybook.io/release"] == "dx29"
    assert service.spec.selector == {"app": "dx29-gateway-backend"}

    applied_at = deploybook_apply_times(kube, namespace)
    service_versions = {r.name: r.resource_version for r in first if r.kind == "Service"}
    time.sleep(1.1)  # managedFields times have second precision: a rewrite now would show
    diffs = diff_objects(kube, objs)
    assert [(d.name, d.action, d.diff) for d in diffs if d.changed or d.diff] == []
    second = apply_objects(kube, objs)
    assert {r.action for r in second} == {"unchanged"}
    # A true no-op at the server: deploybook's own write time did not move (the controllers'
    # status writes change resourceVersion, so that cannot tell).
    assert deploybook_apply_times(kube, namespace) == applied_at
    # No controller writes Services: their resourceVersion must not move either.
    assert {r.name: r.resource_version for r in second if r.kind == "Service"} == service_versions
    assert ensure_pull_secret(kube, namespace, PULL_SECRET, env["DEPLOYBOOK_REGISTRY"], Credentials(env)).action == (
        "unchanged"
    )


def test_a_new_digest_is_the_only_difference(kube: KubeClients, env: dict[str, str], namespace: str) -> None:
    apply_objects(kube, rendered(env, namespace, seed="a"))
    changed = rendered(env, namespace, seed="a")
    gateway = next(o for o in changed if o["metadata"]["name"] == "dx29-gateway-deployment")
    new_ref = f"{env['DEPLOYBOOK_REGISTRY']}/dx29/gateway@{digest('b')}"
    gateway["spec"]["template"]["spec"]["containers"][0]["image"] = new_ref
    updates = [d for d in diff_objects(kube, changed) if d.changed]
    assert [(d.name, d.action) for d in updates] == [("dx29-gateway-deployment", "update")]
    removed = [line for line in updates[0].diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line for line in updates[0].diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert len(removed) == 1 and digest("a") in removed[0]
    assert len(added) == 1 and new_ref in added[0]


def test_dry_run_creates_nothing(kube: KubeClients, env: dict[str, str], namespace_name: str) -> None:
    planned = ensure_namespace(kube, namespace_name, dry_run=True)
    assert (planned.action, planned.dry_run) == ("created", True)
    with pytest.raises(ApiException) as info:
        kube.core.read_namespace(namespace_name)
    assert info.value.status == 404
    results = apply_objects(kube, rendered(env, namespace_name), dry_run=True)
    assert {(r.action, r.dry_run, r.validated) for r in results} == {("created", True, False)}

    ensure_namespace(kube, namespace_name)
    validated = apply_objects(kube, rendered(env, namespace_name), dry_run=True)
    assert {(r.action, r.dry_run, r.validated) for r in validated} == {("created", True, True)}
    secret = ensure_pull_secret(
        kube, namespace_name, PULL_SECRET, env["DEPLOYBOOK_REGISTRY"], Credentials(env), dry_run=True
    )
    assert secret.dry_run
    assert names_in(kube, namespace_name) == {"Deployment": [], "Service": [], "Secret": []}


def test_a_manifest_the_server_rejects_applies_nothing(kube: KubeClients, env: dict[str, str], namespace: str) -> None:
    objs = rendered(env, namespace)
    terms = next(o for o in objs if o["metadata"]["name"] == "dx29-terms-deployment")
    terms["spec"]["replicas"] = -1
    service = next(o for o in objs if o["metadata"]["name"] == "dx29-annotation")
    service["spec"]["ports"][0]["port"] = 70000
    with pytest.raises(ApplyError) as info:
        apply_objects(kube, objs)
    message = str(info.value)
    assert "rejected 2 objects" in message
    assert f"Deployment/dx29-terms-deployment -n {namespace}" in message
    assert "spec.replicas" in message
    assert f"Service/dx29-annotation -n {namespace}" in message
    assert "70000" in message
    assert "context deploybook-admin" in message
    assert "nothing was applied" in message
    assert names_in(kube, namespace) == {"Deployment": [], "Service": [], "Secret": []}


def test_the_view_context_is_refused_clearly(env: dict[str, str], namespace: str, kube: KubeClients) -> None:
    viewer = connect(context="deploybook-view", kubeconfig=env["KUBECONFIG"])
    with pytest.raises(ApplyError) as info:
        apply_objects(viewer, rendered(env, namespace))
    assert "forbidden" in str(info.value).lower()
    assert "context deploybook-view" in str(info.value)
    assert names_in(kube, namespace)["Deployment"] == []


def test_an_unknown_context_names_the_known_ones(env: dict[str, str]) -> None:
    with pytest.raises(ClusterError) as info:
        connect(context="deploybook-no-such-context", kubeconfig=env["KUBECONFIG"])
    assert "deploybook-admin" in str(info.value) and "deploybook-view" in str(info.value)
    assert env["KUBECONFIG"] in str(info.value)
