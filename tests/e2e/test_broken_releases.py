"""Releases broken on purpose, each in its own namespace, and the check that must catch each.

A tiny image is built from the host's static busybox with the Docker SDK (deploybook's own
`build_image`/`push_image`), in two variants with different digests, and pushed to the local
registry. Every case gets a namespace of its own (deleted afterwards, whatever happened):

- a container that crashes            -> wait_for_rollout fails with CrashLoopBackOff, within
                                         30 s of the first crash (the figure is printed)
- an image digest that cannot be pulled -> ImagePullBackOff
- a readiness probe that never passes -> Timeout, with the probe failures in the evidence
- a Service with no endpoints         -> ready_endpoints reports none ready
- `kubectl set image` to another digest after the release -> the real `pytest checks` CLI
  fails the digest check, showing the running and the recorded digest and the pod
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploybook.errors import RolloutFailed
from deploybook.verify.endpoints import ready_endpoints
from deploybook.verify.rollout import wait_for_rollout

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "deploybook-e2e/tiny"
PULL_SECRET = "e2e-registry"
CRASH_VERDICT_BOUND_S = 30.0  # the promise of issue 4: a crash loop reported within 30 s
DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
COPY www /www
USER 10001:10001
ENTRYPOINT ["/bin/busybox"]
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
"""


@pytest.fixture(scope="module")
def tiny_images(
    cluster_ready: dict[str, str], registry_auth: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Variant -> PushResult of the tiny busybox image; variants differ only by a label."""
    import docker

    from deploybook.images.build import build_image
    from deploybook.images.push import push_image

    context = tmp_path_factory.mktemp("tiny")
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "www").mkdir()
    (context / "www" / "health").write_text('{"service":"web"}\n')
    (context / "Dockerfile").write_text(DOCKERFILE)
    client = docker.DockerClient(base_url=cluster_ready["DOCKER_HOST"])
    repository = f"{cluster_ready['DEPLOYBOOK_REGISTRY']}/{REPOSITORY}"
    pushed = {}
    try:
        for variant in ("a", "b"):
            built = build_image(
                client,
                context=context,
                dockerfile="Dockerfile",
                tag=f"{repository}:{variant}",
                labels={"org.deploybook.e2e.variant": variant},
            )
            pushed[variant] = push_image(
                client,
                repository=repository,
                tag=variant,
                auth=registry_auth,
                source=built.image_id,
                ca_file=cluster_ready["DEPLOYBOOK_REGISTRY_CA"],
            )
    finally:
        client.close()
    assert pushed["a"].digest != pushed["b"].digest
    return pushed


@pytest.fixture
def namespace(admin: Any, cluster_ready: dict[str, str], registry_auth: Any) -> Iterator[str]:
    """A fresh namespace with the registry's pull secret; deleted after the test, pass or fail."""
    from deploybook.manifests.pull_secret import ensure_pull_secret

    name = f"dbk-broken-{uuid.uuid4().hex[:8]}"
    admin.core.create_namespace({"metadata": {"name": name, "labels": {"deploybook.io/e2e": "broken"}}})
    try:
        ensure_pull_secret(admin, name, PULL_SECRET, cluster_ready["DEPLOYBOOK_REGISTRY"], registry_auth)
        yield name
    finally:
        admin.core.delete_namespace(name, propagation_policy="Background")


def deployment(
    name: str, image: str, *, command: list[str] | None = None, ready_path: str = "/health", replicas: int = 1
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "web",
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": ready_path, "port": "http"}, "periodSeconds": 2},
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    if command:
        container["command"] = command
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [container],
                    "imagePullSecrets": [{"name": PULL_SECRET}],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def service(name: str, selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def rollout_failure(admin: Any, namespace: str, name: str, timeout_s: float) -> RolloutFailed:
    with pytest.raises(RolloutFailed) as caught:
        wait_for_rollout(admin, "Deployment", namespace, name, timeout_s=timeout_s)
    return caught.value


def first_crash(admin: Any, namespace: str, app: str) -> dt.datetime:
    """The earliest finishedAt of a terminated container of the app's pods (the first crash)."""
    pods = admin.core.list_namespaced_pod(namespace, label_selector=f"app={app}").items
    ends = [
        term.finished_at
        for pod in pods
        for cs in pod.status.container_statuses or ()
        for term in (cs.state.terminated, cs.last_state.terminated)
        if term and term.finished_at
    ]
    assert ends, f"no terminated container in {namespace}: nothing crashed?"
    return min(ends)


def test_crashing_container_is_reported_within_30s_of_its_first_crash(
    admin: Any, namespace: str, tiny_images: dict[str, Any]
) -> None:
    # Runs a few seconds before crashing, so the verdict is timed from the crash, not the start.
    crash = ["/bin/busybox", "sh", "-c", "sleep 6; echo 'config missing, giving up' >&2; exit 3"]
    admin.apps.create_namespaced_deployment(namespace, deployment("crasher", tiny_images["a"].ref, command=crash))
    failure = rollout_failure(admin, namespace, "crasher", timeout_s=120)
    verdict_at = dt.datetime.now(dt.UTC)
    crashed_at = first_crash(admin, namespace, "crasher")
    seconds = (verdict_at - crashed_at).total_seconds()
    print(
        f"\ncrash-loop verdict {seconds:.1f} s after the first crash (finishedAt {crashed_at.isoformat()}, "
        f"whole-second resolution; rollout waited {failure.elapsed_s:.1f} s)"
    )
    assert failure.cause == "CrashLoopBackOff", str(failure)
    assert "exited with code 3" in failure.detail
    assert "giving up" in failure.evidence, failure.evidence
    assert seconds <= CRASH_VERDICT_BOUND_S, f"crash loop reported {seconds:.1f} s after the first crash"


def test_unpullable_digest_fails_with_image_pull_cause(
    admin: Any, namespace: str, cluster_ready: dict[str, str], tiny_images: dict[str, Any]
) -> None:
    missing = f"{cluster_ready['DEPLOYBOOK_REGISTRY']}/{REPOSITORY}@sha256:{'0' * 64}"
    admin.apps.create_namespaced_deployment(namespace, deployment("ghost", missing))
    failure = rollout_failure(admin, namespace, "ghost", timeout_s=120)
    assert failure.cause == "ImagePullBackOff", str(failure)
    assert "ErrImagePull" in failure.detail or "ImagePullBackOff" in failure.detail
    assert failure.elapsed_s < 60, f"pull failure took {failure.elapsed_s} s to report"
    assert "0" * 64 in failure.evidence


def test_readiness_probe_that_never_passes_times_out_with_the_probe_failures(
    admin: Any, namespace: str, tiny_images: dict[str, Any]
) -> None:
    admin.apps.create_namespaced_deployment(
        namespace, deployment("unready", tiny_images["a"].ref, ready_path="/not-there")
    )
    failure = rollout_failure(admin, namespace, "unready", timeout_s=25)
    assert failure.cause == "Timeout", str(failure)
    assert "0 of 1 updated replicas available" in failure.detail
    assert failure.deadline_source == "timeout" and failure.deadline_s == 25
    evidence = failure.evidence
    assert "Readiness probe failed" in evidence and "404" in evidence, evidence


def test_service_with_no_endpoints_is_reported_empty(admin: Any, namespace: str, tiny_images: dict[str, Any]) -> None:
    admin.apps.create_namespaced_deployment(namespace, deployment("web", tiny_images["a"].ref))
    wait_for_rollout(admin, "Deployment", namespace, "web", timeout_s=120)
    admin.core.create_namespaced_service(namespace, service("web", {"app": "web"}))
    admin.core.create_namespaced_service(namespace, service("web-typo", {"app": "wbe"}))
    deadline = time.monotonic() + 30
    while not (ready := ready_endpoints(admin, namespace, "web")).ready and time.monotonic() < deadline:
        time.sleep(1)  # the EndpointSlice controller needs a moment for the good Service
    empty = ready_endpoints(admin, namespace, "web-typo")
    assert ready.ready, f"the correct Service got no endpoints: {ready}"
    assert empty.ready == () and empty.not_ready == (), empty
    assert empty.verdict in ("no EndpointSlice", "0 ready"), empty.verdict


# ----------------------------------------------------------- through the real `pytest checks`

ENVIRONMENT = """\
description: a release broken on purpose by the e2e tests
cluster:
  context: deploybook-admin
  namespace: {namespace}
registry:
  address: ${{DEPLOYBOOK_REGISTRY}}
  username: ${{DEPLOYBOOK_REGISTRY_USER}}
  password_file: ${{DEPLOYBOOK_REGISTRY_PASSWORD_FILE}}
  ca_file: ${{DEPLOYBOOK_REGISTRY_CA}}
branch:
  name: null
manifests:
  path: manifests
timeouts:
  rollout: 60
  http: 10
services:
  - name: web
    context: web
    image: {repository}
    port: 8080
    manifest: web.yaml
    http:
      - path: /health
        expect_json: {{service: web}}
"""


def checks_root(tmp_path: Path, namespace: str, recorded: Any) -> Path:
    """A project folder whose `checks/` is this repository's, with an environment for `namespace`."""
    root = tmp_path / "project"
    shutil.copytree(ROOT / "checks", root / "checks", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("node_modules", "package.json"):  # the pinned Allure that writes the report
        (root / name).symlink_to(ROOT / name)
    shutil.copy(ROOT / "pytest.ini", root / "pytest.ini")
    (root / "environments").mkdir()
    (root / "environments" / "broken.yaml").write_text(ENVIRONMENT.format(namespace=namespace, repository=REPOSITORY))
    record = {
        "run_id": "e2e-broken",
        "environment": "broken",
        "namespace": namespace,
        "outcome": "passed",
        "finished": "2026-01-01T00:00:00Z",
        "git": {"commit": "e2e"},
        "services": {"web": {"image": recorded.repository, "tag": recorded.tag, "digest": recorded.digest}},
    }
    (root / "release.json").write_text(json.dumps(record))
    return root


def test_set_image_after_release_is_caught_by_the_digest_check(
    admin: Any, namespace: str, tiny_images: dict[str, Any], cluster_ready: dict[str, str], tmp_path: Path
) -> None:
    released, other = tiny_images["a"], tiny_images["b"]
    admin.apps.create_namespaced_deployment(namespace, deployment("web", released.ref))
    admin.core.create_namespaced_service(namespace, service("web", {"app": "web"}))
    wait_for_rollout(admin, "Deployment", namespace, "web", timeout_s=120)
    subprocess.run(
        [
            "kubectl",
            "--context",
            "deploybook-admin",
            "-n",
            namespace,
            "set",
            "image",
            "deployment/web",
            f"web={other.ref}",
        ],
        env=cluster_ready,
        check=True,
        timeout=60,
        capture_output=True,
    )
    wait_for_rollout(admin, "Deployment", namespace, "web", timeout_s=120)
    pods = admin.core.list_namespaced_pod(namespace, label_selector="app=web").items
    (pod,) = [p.metadata.name for p in pods if p.metadata.deletion_timestamp is None]  # the old one is going

    root = checks_root(tmp_path, namespace, released)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "checks",
            "--env",
            "broken",
            "--release",
            "release.json",
            "--kube-context",
            "deploybook-view",
            "-p",
            "no:cacheprovider",
            "-rA",
        ],
        cwd=root,
        env={**cluster_ready, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, f"checks should fail on the changed image:\n{out[-5000:]}"
    assert "FAILED checks/test_30_digests.py::test_running_digest_is_recorded_digest[web]" in out, out[-5000:]
    assert f"pod {pod} container web: running {other.digest}, recorded {released.digest}" in out, out[-5000:]
    for passing in (
        "test_10_rollout.py::test_workloads_rolled_out[web]",
        "test_20_endpoints.py::test_service_endpoints_ready_and_answering[web]",
    ):
        assert f"PASSED checks/{passing}" in out, f"{passing} should pass:\n{out[-5000:]}"
    assert "! sha256:" in out, "the status table does not mark the digest mismatch"
