"""Faults on the real local stack: each case breaks something on purpose and checks the verdict.

Every case runs in a namespace of its own (a throwaway environment, see conftest.py) that is
deleted afterwards, and any stack component it stops is started again in a finally. Each case
writes one row of the fault table (``reports/reliability/faults.jsonl``): what was expected,
what happened, and what was lost.

- registry stopped during a release  -> bounded retries, a failure naming the registry, nothing applied
- API server restarted during a watch -> the watch resumes, the rollout verdict is right
- kubelet stopped mid-rollout         -> NodeNotReady naming the node, within the deadline
- a new image that crashes            -> early failure; --rollback-on-failure restores the last
                                         passed release and `pytest checks` proves its digests run
- two releases at once                -> the second refuses naming the holder; the lock of a killed
                                         run is renewed no more, expires, and is taken over explicitly
- SIGINT during apply                 -> lock released, partial release recorded, report written
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
Release = Any  # tests/e2e/conftest.py: Release, ThrowawayEnvironment
ThrowawayEnvironment = Any

pytestmark = [pytest.mark.fault]
NODE = "deploybook-node"
LEASE = "deploybook-release"
CRASH_ENTRYPOINT = 'ENTRYPOINT ["/bin/sh", "-c", "echo crashing on purpose >&2; exit 3"]'


# --------------------------------------------------------------------------- shared pieces


@pytest.fixture
def kit(stack_kit: Any) -> Any:
    """Stack helpers from tests/e2e/conftest.py."""
    return stack_kit


@pytest.fixture(scope="module")
def docker_client(cluster_ready: dict[str, str]) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=cluster_ready["DOCKER_HOST"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def good_image(cluster_ready: dict[str, str], docker_client: Any, registry_auth: Any) -> Any:
    """The sample gateway, built from its context and pushed as ``fault-shared/gateway:good``."""
    from deploybook.images.build import build_image
    from deploybook.images.push import push_image

    subprocess.run([str(ROOT / "apps" / "dx29" / "prepare"), "gateway"], check=True, capture_output=True)
    repository = f"{cluster_ready['DEPLOYBOOK_REGISTRY']}/fault-shared/gateway"
    built = build_image(
        docker_client,
        context=ROOT / "apps/dx29/gateway",
        dockerfile="Dockerfile",
        tag=f"{repository}:good",
        labels={"org.deploybook.fault": "good"},
    )
    return push_image(
        docker_client,
        repository=repository,
        tag="good",
        auth=registry_auth,
        source=built.image_id,
        ca_file=cluster_ready["DEPLOYBOOK_REGISTRY_CA"],
    )


@pytest.fixture
def namespace(admin: Any, cluster_ready: dict[str, str], registry_auth: Any) -> Iterator[str]:
    """A fresh namespace with the registry's pull secret; deleted afterwards, pass or fail."""
    from deploybook.manifests.pull_secret import ensure_pull_secret

    name = f"dbk-fault-{uuid.uuid4().hex[:8]}"
    admin.core.create_namespace({"metadata": {"name": name, "labels": {"deploybook.io/e2e": "fault"}}})
    try:
        ensure_pull_secret(admin, name, "fault-registry", cluster_ready["DEPLOYBOOK_REGISTRY"], registry_auth)
        yield name
    finally:
        admin.core.delete_namespace(name, propagation_policy="Background")


def slow_deployment(name: str, image: str, *, ready_after_s: int) -> dict[str, Any]:
    """A one-replica Deployment of the gateway whose readiness probe starts after ``ready_after_s``."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "imagePullSecrets": [{"name": "fault-registry"}],
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "initialDelaySeconds": ready_after_s,
                                "periodSeconds": 2,
                            },
                        }
                    ],
                },
            },
        },
    }


def namespace_objects(admin: Any, namespace: str) -> dict[str, str]:
    """``kind/name`` -> resourceVersion of what a release could have written in ``namespace``."""
    found: dict[str, str] = {}
    lists = {
        "Deployment": admin.apps.list_namespaced_deployment,
        "Service": admin.core.list_namespaced_service,
        "ConfigMap": admin.core.list_namespaced_config_map,
        "Secret": admin.core.list_namespaced_secret,
        "Lease": admin.coordination.list_namespaced_lease,
    }
    for kind, list_fn in lists.items():
        for obj in list_fn(namespace).items:
            if kind == "ConfigMap" and obj.metadata.name == "kube-root-ca.crt":
                continue
            found[f"{kind}/{obj.metadata.name}"] = obj.metadata.resource_version
    return found


def lease_spec(admin: Any, namespace: str) -> Any:
    """The release Lease's spec, or None when there is none."""
    from kubernetes.client.exceptions import ApiException

    try:
        return admin.coordination.read_namespaced_lease(LEASE, namespace).spec
    except ApiException as e:
        if e.status == 404:
            return None
        raise


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} not seen within {timeout_s}s")


def running_digests(admin: Any, namespace: str, selector: str) -> set[str]:
    from deploybook.verify.digests import running_images

    return {c.digest or "none" for c in running_images(admin, namespace, selector)}


# --------------------------------------------------------------------------- 1. registry


def test_registry_stopped_during_release(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    cluster_ready: dict[str, str],
    admin: Any,
    fault_case: dict[str, Any],
    kit: Any,
    tmp_path: Path,
) -> None:
    fault_case.update(
        case="registry stopped during push",
        expected="bounded push retries, one failure naming the registry, nothing applied",
    )
    env = throwaway_environment(services=("gateway",))
    with kit.component_down("registry", cluster_ready):
        run = release_runner("runbook", "--env", env.name)
        assert run.wait_for_output(" build | ", 180), run.output[-3000:]
        kit.stop_component("registry", cluster_ready)
        stopped = time.monotonic()
        code = run.wait(300)
        failed_after = time.monotonic() - stopped
    out = run.output
    assert code == 1, out[-3000:]
    message = next((ln for ln in out.splitlines() if "unreachable when pushing" in ln), "")
    assert "registry localhost:5000 unreachable" in message and "tried 3 times" in message, out[-3000:]
    record = kit.records_of(tmp_path / "reports", env.name)[-1]
    gateway = record["services"]["gateway"]["stages"]
    assert gateway["push"]["outcome"] == "failed" and gateway["apply"]["outcome"] == "skipped", gateway
    assert record["outcome"] == "failed" and record["applied"] == []
    left = namespace_objects(admin, env.namespace)
    assert left == {}, f"a release whose push failed left objects behind: {left}"
    fault_case.update(
        observed=f"push failed {failed_after:.1f}s after the registry stopped: "
        f"{message.strip()[:200]}; apply skipped, namespace holds no object",
        lost="nothing",
        seconds=round(failed_after, 1),
    )


# --------------------------------------------------------------------------- 2. API server


def test_api_server_restarted_while_rollout_watched(
    admin: Any,
    namespace: str,
    good_image: Any,
    cluster_ready: dict[str, str],
    fault_case: dict[str, Any],
    kit: Any,
) -> None:
    from deploybook.cluster.connect import connect
    from deploybook.verify.rollout import wait_for_rollout

    fault_case.update(
        case="API server restarted during rollout watch",
        expected="the watch resumes after the restart and reports the rollout done",
    )
    admin.apps.create_namespaced_deployment(namespace, slow_deployment("slow", good_image.ref, ready_after_s=20))
    watcher = connect(context="deploybook-admin", kubeconfig=cluster_ready["KUBECONFIG"])
    outcome: dict[str, Any] = {}

    def watch() -> None:
        try:
            outcome["result"] = wait_for_rollout(watcher, "Deployment", namespace, "slow", timeout_s=150)
        except Exception as e:
            outcome["error"] = e

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(3)
    with kit.component_down("kube-apiserver", cluster_ready):
        down = time.monotonic()
        # SIGKILL, a crash: a graceful stop would keep serving the open watches while it drains.
        kit.stop_component("kube-apiserver", cluster_ready, sig=signal.SIGKILL)
        kit.start_component("kube-apiserver", cluster_ready)
        outage = time.monotonic() - down
    thread.join(timeout=180)
    assert "error" not in outcome, f"rollout verdict wrong after the restart: {outcome.get('error')}"
    result = outcome["result"]
    assert result.ready == 1 and result.desired == 1
    retried = [m for _, m in result.timeline if "retrying" in m]
    assert retried, f"the watch never saw the API server go: {result.timeline}"
    fault_case.update(
        observed=f"API server down {outage:.1f}s; watch retried and resumed; rolled out "
        f"1/1 after {result.elapsed_s:.1f}s",
        lost="nothing",
        seconds=round(outage, 1),
        timeline=[f"{t:.1f}s {m[:120]}" for t, m in result.timeline],
    )


# --------------------------------------------------------------------------- 3. kubelet


def test_kubelet_stopped_mid_rollout(
    admin: Any,
    namespace: str,
    good_image: Any,
    cluster_ready: dict[str, str],
    fault_case: dict[str, Any],
    kit: Any,
) -> None:
    from deploybook.errors import RolloutFailed
    from deploybook.verify.rollout import wait_for_rollout

    fault_case.update(
        case="kubelet stopped mid-rollout", expected=f"NodeNotReady naming node {NODE}, before the rollout deadline"
    )
    admin.apps.create_namespaced_deployment(namespace, slow_deployment("stranded", good_image.ref, ready_after_s=300))
    wait_for(
        lambda: [p for p in admin.core.list_namespaced_pod(namespace).items if p.spec.node_name],
        60,
        "the pod scheduled",
    )
    deadline_s = 120
    try:
        with kit.component_down("kubelet", cluster_ready):
            kit.stop_component("kubelet", cluster_ready)
            with pytest.raises(RolloutFailed) as info:
                wait_for_rollout(admin, "Deployment", namespace, "stranded", timeout_s=deadline_s)
    finally:
        kit.wait_node_ready(admin)
    failure = info.value
    assert failure.cause == "NodeNotReady", str(failure)
    assert NODE in failure.detail and failure.elapsed_s < deadline_s, str(failure)
    fault_case.update(
        observed=f"{failure.cause} after {failure.elapsed_s:.1f}s (deadline {deadline_s}s): {failure.detail[:200]}",
        lost="nothing",
        seconds=failure.elapsed_s,
    )


# --------------------------------------------------------------------------- 4. crash + rollback


def crash_context(tmp_path: Path) -> Path:
    """The gateway's build context with an entrypoint that exits 3 at once."""
    subprocess.run([str(ROOT / "apps" / "dx29" / "prepare"), "gateway"], check=True, capture_output=True)
    context = tmp_path / "crash-gateway"
    shutil.copytree(ROOT / "apps" / "dx29" / "gateway", context, symlinks=True)
    dockerfile = context / "Dockerfile"
    text = re.sub(r"^ENTRYPOINT .*$", CRASH_ENTRYPOINT, dockerfile.read_text(), flags=re.M)
    dockerfile.write_text(text)
    return context


def baseline_record(env: ThrowawayEnvironment, repository: str, digest: str, path: Path) -> Path:
    """A release record naming the good image, to resume a first release from (``--from-stage apply``).

    The good image carries its own tag, so the crashing build (tagged with the commit) does not
    move the tag the restored release recorded.
    """
    record = {
        "run_id": f"baseline-{uuid.uuid4().hex[:6]}",
        "environment": env.name,
        "namespace": env.namespace,
        "outcome": "passed",
        "started": "",
        "finished": "",
        "services": {"gateway": {"image": repository, "tag": "baseline", "digest": digest}},
    }
    path.write_text(json.dumps(record))
    return path


def test_crashing_image_rolled_back(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    cluster_ready: dict[str, str],
    admin: Any,
    good_image: Any,
    docker_client: Any,
    registry_auth: Any,
    fault_case: dict[str, Any],
    kit: Any,
    tmp_path: Path,
) -> None:
    from deploybook.images.push import push_image

    fault_case.update(
        case="new image crashes, --rollback-on-failure",
        expected="early CrashLoopBackOff; previous release restored; checks pass on its digests",
    )
    env = throwaway_environment(services=("gateway",), contexts={"gateway": crash_context(tmp_path)})
    repository = env.repository(cluster_ready["DEPLOYBOOK_REGISTRY"], "gateway")
    good = push_image(
        docker_client,
        repository=repository,
        tag="baseline",
        auth=registry_auth,
        source=good_image.ref,
        ca_file=cluster_ready["DEPLOYBOOK_REGISTRY_CA"],
    )
    first = release_runner(
        "runbook",
        "--env",
        env.name,
        "--from-stage",
        "apply",
        "--release",
        str(baseline_record(env, repository, good.digest, tmp_path / "base.json")),
    )
    assert first.wait(300) == 0, first.output[-4000:]
    passed = kit.records_of(tmp_path / "reports", env.name)[-1]
    assert passed["outcome"] == "passed"

    started = time.monotonic()
    crash = release_runner("runbook", "--env", env.name, "--rollback-on-failure")
    code = crash.wait(400)
    took = time.monotonic() - started
    out = crash.output
    assert code == 1, out[-4000:]
    assert "CrashLoopBackOff" in out, out[-4000:]
    record = kit.records_of(tmp_path / "reports", env.name)[-1]
    assert record["outcome"] == "rolled-back", json.dumps(record.get("rollback"), indent=1)
    restored = record["rollback"]["services"]["gateway"]
    assert record["rollback"]["target_run_id"] == passed["run_id"] and restored["verified"], restored
    assert restored["to"] == good.digest and restored["from"] != good.digest and restored["method"] == "exact"
    assert running_digests(admin, env.namespace, "app=dx29-gateway-backend") == {good.digest}

    checks = release_runner("checks", "--env", env.name)
    assert checks.wait(300) == 0, checks.output[-4000:]
    fault_case.update(
        observed=f"crash release failed with CrashLoopBackOff and was rolled back to "
        f"{passed['run_id']} ({restored['method']}, proven) in {took:.0f}s; "
        "`pytest checks` passed on the previous digest",
        lost="nothing",
        seconds=round(took, 1),
    )


# --------------------------------------------------------------------------- 5. lock


def test_concurrent_release_refused_and_dead_lock_taken_over(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    admin: Any,
    fault_case: dict[str, Any],
    kit: Any,
) -> None:
    fault_case.update(
        case="two releases at once; lock of a killed run",
        expected="second refuses naming the holder; the dead run's lock expires and is "
        "taken over only with --take-over-lock",
    )
    duration = 10

    def slow_gateway(name: str, text: str) -> str:  # keeps the first release busy past the lease duration
        if name != "gateway.yaml":
            return text
        return text.replace("readinessProbe:\n", "readinessProbe:\n            initialDelaySeconds: 30\n", 1)

    env = throwaway_environment(services=("gateway", "annotation"), lock_duration_s=duration, edit=slow_gateway)
    first = release_runner("runbook", "--env", env.name)
    holder = wait_for(lambda: (s := lease_spec(admin, env.namespace)) and s.holder_identity, 120, "the lock")
    assert f":{first.proc.pid}/" in holder
    second = release_runner("runbook", "--env", env.name)
    assert second.wait(120) == 4, second.output[-3000:]
    assert f"locked by {holder}" in second.output, second.output[-3000:]

    time.sleep(duration + 2)  # without renewals the lease would have expired by now
    spec = lease_spec(admin, env.namespace)
    assert first.proc.poll() is None, "the first release ended before it could be killed mid-way"
    assert spec.holder_identity == holder and spec.renew_time > spec.acquire_time, "the lock was not renewed"
    first.kill(signal.SIGKILL)
    first.wait(30)
    left = lease_spec(admin, env.namespace)
    assert left is not None and left.holder_identity == holder, "a killed run cannot release its lock"

    expiry = left.renew_time.timestamp() + duration
    time.sleep(max(0.0, expiry - time.time() + 1))
    refused = release_runner("runbook", "--env", env.name)
    assert refused.wait(120) == 4 and "--take-over-lock" in refused.output and "expired" in refused.output, (
        refused.output[-3000:]
    )
    taken = release_runner("runbook", "--env", env.name, "--take-over-lock")
    assert taken.wait(400) == 0, taken.output[-4000:]
    assert f"took over the lock of {holder}" in taken.output
    assert lease_spec(admin, env.namespace) is None
    fault_case.update(
        observed="second release exited 4 naming the holder; the lease was renewed past its "
        f"{duration}s duration; after kill -9 it expired, a plain run refused, "
        "--take-over-lock took it and released",
        lost="nothing (the killed run's partial release was re-applied by the next one)",
    )


# --------------------------------------------------------------------------- 6. SIGINT


def test_sigint_during_apply(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    admin: Any,
    fault_case: dict[str, Any],
    kit: Any,
    tmp_path: Path,
) -> None:
    fault_case.update(
        case="SIGINT during apply",
        expected="lock released, release recorded as interrupted with what was applied, report written",
    )
    services = ("gateway", "annotation", "terms", "worker")
    # The worker's build waits 30 s first, so the interrupt lands while the others are applied
    # and the worker is not (with the engine's images held, every service reaches apply at once).
    env = throwaway_environment(services=services, prepare={"worker": "sh -c 'sleep 30; apps/dx29/prepare worker'"})
    run = release_runner("runbook", "--env", env.name)
    assert run.wait_for_output(" apply | ", 300), run.output[-3000:]
    run.interrupt()  # the whole group, as Ctrl-C: the worker's prepare and the report's engine too
    code = run.wait(180)
    out = run.output
    assert code == 2, out[-3000:]
    record = kit.records_of(tmp_path / "reports", env.name)[-1]
    assert record["outcome"] == "interrupted", record["outcome"]
    assert lease_spec(admin, env.namespace) is None, "the lock survived Ctrl-C"
    run_dir = next((tmp_path / "reports" / env.name).glob(f"{record['run_id']}"))
    assert list(run_dir.rglob("*.html")), f"no report in {run_dir}"
    deployed = {d.metadata.name for d in admin.apps.list_namespaced_deployment(env.namespace).items}
    applied = set(record["applied"])
    during = record.get("interrupted_during") or ""
    partial = next((s for s in services if f"[{s}]" in during), None)
    for svc in services:
        present = f"dx29-{svc}-deployment" in deployed
        if svc != partial:
            assert present == (svc in applied), f"{svc}: in cluster {present}, recorded applied {svc in applied}"
    assert len(applied) < len(services), f"the interrupt came after every apply: {record['applied']}"
    fault_case.update(
        observed=f"exit 2; record interrupted, applied {sorted(applied) or 'none'}, stopped in "
        f"{during or '-'}; lease gone; report written",
        lost="nothing unrecorded: the services not applied are listed as such",
    )
