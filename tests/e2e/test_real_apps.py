"""An app that is not the sample, released as a new team would: tests/apps/shop.

The shop app (a Deployment of 2 replicas, a StatefulSet with a headless Service, a DaemonSet
and a Job) is built from its own tiny Dockerfiles, released with ``pytest runbook`` and
checked with ``pytest checks``, each in a namespace of its own (``dbk-shop-<id>``, deleted
afterwards). Then each fault is released on its own and must fail with its cause, once:

- a container that crashes                   -> CrashLoopBackOff
- a readiness probe answering 404            -> ReadinessProbeFailed naming the probe and 404,
                                                within 30 s of the first probe failure
- a Job whose run fails                      -> JobFailed with the exit code
  (and with ``timeouts.crashes_allowed: 1``, a container that exits once at start passes;
  a Deployment scaled to 0 replicas passes, its pods' checks skipped with that reason; a canary
  whose pods the stable Deployment's selector selects too is counted once)
- a StatefulSet with OnDelete, image changed -> the rollout notes the pod left on the old
                                                revision; the digest check fails on it
- a pod no node can take (nodeSelector)      -> Unschedulable with the scheduler's reason
- a PersistentVolumeClaim of a class the     -> Unschedulable naming the claim, that the class
  cluster does not have                         is not there, and the claim's event
- a bare Pod (restartPolicy Never) exiting 3 -> PodFailed with the exit code
- a second Service whose selector has a typo -> "selects no pod", naming it and the selector
- a custom resource whose status is Stalled -> its reason, by the kstatus generic rules (a
                                                CRD of the test's own, deleted afterwards)

And a Deployment with ``strategy: Recreate`` whose old pods end killed at their grace period
(busybox httpd as PID 1 does not stop on SIGTERM) releases a new image and passes; a Job
released again with a new image is run again (its pod template cannot change: the finished one
is deleted and created anew); a manifest saved with ``kubectl get -o yaml`` (server-set
metadata, a status) releases; a service's image written with the registry and a tag is pinned
like the bare name; ``helm template`` output's test hook Pod is not applied; build args and a
target stage that is not the last make the image that is released.

"One failure per cause": the run's summary counts exactly one failed test (the service's
later checks are skipped with the rollout's reason).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from throwaway import remove_environments

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "tests" / "apps" / "shop"
Release = Any  # tests/e2e/conftest.py: Release
Edit = Callable[[str, str], str]  # (manifest file name, text) -> text


@dataclass(frozen=True)
class ShopEnvironment:
    """``environments/<name>.yaml`` for the shop app, in namespace ``namespace``."""

    name: str
    namespace: str
    file: Path
    manifests: Path


def _write(
    name: str,
    namespace: str,
    manifests: Path,
    services: Sequence[str],
    contexts: dict[str, Path],
    timeouts: dict[str, Any],
) -> str:
    doc = yaml.safe_load((SHOP / "environment.yaml").read_text())
    doc["timeouts"].update(timeouts)
    declared = yaml.safe_load((SHOP / "app.yaml").read_text())["services"]
    doc["services"] = [s for s in declared if s["name"] in services]  # self-contained: its own list
    for svc in doc["services"]:
        if svc["name"] in contexts:  # a copy of the context, already prepared
            svc["context"] = str(contexts[svc["name"]])
            svc.pop("prepare", None)
    doc["cluster"]["namespace"] = namespace
    doc["manifests"] = {"path": str(manifests)}
    return "# Written by tests/e2e/test_real_apps.py; deleted when the test ends.\n" + yaml.safe_dump(
        doc, sort_keys=False
    )


@pytest.fixture
def shop(admin: Any) -> Iterator[Callable[..., ShopEnvironment]]:
    """Factory: ``make(services=(...), edit=None, contexts={}, timeouts={})`` -> a shop environment
    of its own (``timeouts`` are set over the shop's)."""
    made: list[ShopEnvironment] = []

    def make(
        services: Sequence[str] = ("web", "db", "agent", "migrate"),
        edit: Edit | None = None,
        contexts: dict[str, Path] | None = None,
        timeouts: dict[str, Any] | None = None,
    ) -> ShopEnvironment:
        ident = uuid.uuid4().hex[:8]
        name, namespace = f"shop-{ident}", f"dbk-shop-{ident}"
        manifests = ROOT / "reports" / "e2e-manifests" / name  # inside the repository, git-ignored
        manifests.mkdir(parents=True, exist_ok=True)
        for src in (SHOP / "manifests").glob("*.yaml"):
            text = src.read_text()
            (manifests / src.name).write_text(edit(src.name, text) if edit else text)
        file = ROOT / "environments" / f"{name}.yaml"
        file.write_text(_write(name, namespace, manifests, services, contexts or {}, timeouts or {}))
        env = ShopEnvironment(name, namespace, file, manifests)
        made.append(env)
        return env

    try:
        yield make
    finally:
        remove_environments(admin, made)


def summary(out: str) -> dict[str, int]:
    """The counts of pytest's last summary line: passed, failed, skipped, error(s)."""
    line = next((ln for ln in reversed(out.splitlines()) if re.search(r"\d+ (passed|failed|skipped|error)", ln)), "")
    counts = {word.rstrip("s"): int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", line)}
    return {k: counts.get(k, 0) for k in ("passed", "failed", "skipped", "error")}


def released(run: Release, timeout_s: float = 420) -> tuple[int, str, dict[str, int]]:
    code = run.wait(timeout_s=timeout_s)
    return code, run.output, summary(run.output)


def assert_one_failure(run: Release, *causes: str) -> str:
    """The run failed with exactly one failed test, whose output names every one of ``causes``."""
    __tracebackhide__ = True
    code, out, counts = released(run)
    assert code != 0, f"the release passed:\n{out[-4000:]}"
    assert counts["failed"] == 1 and counts["error"] == 0, f"expected one failure, got {counts}:\n{out[-6000:]}"
    missing = [c for c in causes if c not in out]
    assert not missing, f"the verdict does not name {missing}:\n{out[-6000:]}"
    print(*(ln for ln in out.splitlines() if ln.startswith(("FAILED ", "SKIPPED "))), sep="\n")  # with -s
    return out


def replace_in(file: str, old: str, new: str) -> Edit:
    """An edit of one manifest file: ``old`` (which must be there) becomes ``new``."""

    def edit(name: str, text: str) -> str:
        if name != file:
            return text
        assert old in text, f"{old!r} is not in {file}"
        return text.replace(old, new, 1)

    return edit


def exits_at_start(file: str, image: str, message: str) -> Edit:
    """An edit that makes the container of ``image`` in ``file`` print ``message`` and exit 3."""
    line = f"          image: {image}\n"
    return replace_in(file, line, line + f'          command: ["/bin/sh", "-c", "echo {message} >&2; exit 3"]\n')


def test_release_and_checks_only_pass(shop: Any, release_runner: Any) -> None:
    env = shop()
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the shop release failed ({counts}):\n{out[-6000:]}"
    code, out, counts = released(release_runner("checks", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"checks-only failed ({counts}):\n{out[-6000:]}"
    # 4 services x 5 checks: endpoints skip for agent and migrate (no port, no Service), the
    # rules for all four (no hook); migrate's containers check passes by its pod's exit code.
    assert counts == {"passed": 14, "failed": 0, "skipped": 6, "error": 0}, f"{counts}\n{out[-3000:]}"
    assert "no ready container of migrate" not in out


def test_a_crash_is_one_failure(shop: Any, release_runner: Any) -> None:
    env = shop(services=("web",), edit=exits_at_start("web.yaml", "shop/web", "crashing"))
    assert_one_failure(release_runner("runbook", "--env", env.name), "CrashLoopBackOff", "exited with code 3")


def first_probe_failure(admin: Any, namespace: str) -> datetime:
    events = admin.core.list_namespaced_event(namespace, field_selector="reason=Unhealthy").items
    assert events, f"no Unhealthy event in {namespace}"
    return min(e.first_timestamp or e.event_time for e in events)


def exits_once_at_start(file: str, image: str, entrypoint: str) -> Edit:
    """An edit that makes each pod's container of ``image`` exit 3 on its first start (a
    dependency not up yet), then run ``entrypoint``; an emptyDir remembers the first start."""
    line = f"          image: {image}\n"
    script = f"if [ -e /scratch/started ]; then exec {entrypoint}; fi; touch /scratch/started; exit 3"
    command = f'          command: ["/bin/sh", "-c", "{script}"]\n'
    mount = "          volumeMounts:\n            - {name: scratch, mountPath: /scratch}\n"
    once = replace_in(file, line, line + command + mount)
    volume = replace_in(
        file, "      containers:\n", "      volumes:\n        - {name: scratch, emptyDir: {}}\n      containers:\n"
    )
    return lambda name, text: volume(name, once(name, text))


def test_crashes_allowed_lets_a_service_exit_once_while_a_dependency_comes_up(
    shop: Any, release_runner: Any, admin: Any
) -> None:
    edit = exits_once_at_start("web.yaml", "shop/web", "/bin/httpd -f -p 8080 -h /www")
    env = shop(services=("web",), edit=edit, timeouts={"crashes_allowed": 1})
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"an allowed exit failed the release ({counts}):\n{out[-4000:]}"
    pods = admin.core.list_namespaced_pod(env.namespace, label_selector="app=shop-web").items
    restarts = sorted(cs.restart_count for p in pods for cs in p.status.container_statuses or [])
    assert restarts and all(n >= 1 for n in restarts), f"no container exited at start: restarts {restarts}"


def test_a_service_scaled_to_zero_releases_and_its_pod_checks_say_why_they_skip(shop: Any, release_runner: Any) -> None:
    env = shop(services=("web",), edit=replace_in("web.yaml", "  replicas: 2\n", "  replicas: 0\n"))
    for folder in ("runbook", "checks"):
        code, out, counts = released(release_runner(folder, "--env", env.name, "-rfs"))
        assert code == 0 and counts["failed"] == 0, f"{folder} of web at 0 replicas failed ({counts}):\n{out[-4000:]}"
        skips = [ln for ln in out.splitlines() if ln.startswith("SKIPPED") and "scaled to 0 replicas" in ln]
        assert len(skips) == 3, f"endpoints, digests and containers should skip for 0 replicas:\n{out[-4000:]}"


CANARY = """---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop-web-canary
spec:
  replicas: 1
  selector:
    matchLabels: {app: shop-web, track: canary}
  template:
    metadata:
      labels: {app: shop-web, track: canary}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001}
      automountServiceAccountToken: false
      containers:
        - name: web
          image: shop/web
          ports: [{name: http, containerPort: 8080}]
          readinessProbe: {httpGet: {path: /health, port: http}}
          resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 32Mi}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
"""
INIT_OF_OWN_IMAGE = """      initContainers:
        - name: migrate
          image: shop/web:1.2.3
          command: ["/bin/sh", "-c", "echo migrated"]
          resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 32Mi}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      containers:
"""


def test_a_canary_the_stable_selector_also_selects_is_counted_once(shop: Any, release_runner: Any) -> None:
    """Stable (``app: shop-web``, 2 replicas, an init container of its own image written with a
    tag) and canary (``app: shop-web, track: canary``, 1 replica) behind one Service: the digest
    check counts each pod once, 2 x (init + web) + 1, and the init container runs the pushed digest."""

    def edit(name: str, text: str) -> str:
        return text.replace("      containers:\n", INIT_OF_OWN_IMAGE, 1) + CANARY if name == "web.yaml" else text

    env = shop(services=("web",), edit=edit)
    for folder in ("runbook", "checks"):
        code, out, counts = released(release_runner(folder, "--env", env.name, "-rfs"))
        assert code == 0 and counts["failed"] == 0, f"{folder} of stable and canary failed ({counts}):\n{out[-4000:]}"
        assert re.search(r"running sha256:\w+\.\.\. in 5 container\(s\)", out), f"not 5 containers:\n{out[-4000:]}"


def test_a_readiness_probe_answering_404_ends_the_rollout_within_30_s(
    shop: Any, release_runner: Any, admin: Any
) -> None:
    never_ready = replace_in("web.yaml", "              path: /health\n", "              path: /not-there\n")
    env = shop(services=("web",), edit=never_ready)
    run = release_runner("runbook", "--env", env.name)
    assert run.wait_for_output("ReadinessProbeFailed", timeout_s=240), f"no probe verdict:\n{run.output[-4000:]}"
    seen = datetime.now(UTC)
    out = assert_one_failure(run, "ReadinessProbeFailed", "Readiness probe failed", "status code 404")
    after = (seen - first_probe_failure(admin, env.namespace)).total_seconds()
    print(f"probe verdict {after:.1f} s after the first probe failure")  # the figure, with -s
    assert after <= 30, f"the verdict came {after:.1f} s after the first probe failure:\n{out[-3000:]}"


def test_a_failed_job_is_one_failure_with_its_exit_code(shop: Any, release_runner: Any) -> None:
    env = shop(services=("migrate",), edit=exits_at_start("migrate.yaml", "shop/migrate", "no schema"))
    assert_one_failure(release_runner("runbook", "--env", env.name), "JobFailed", "exited with code 3")


def released_from_own_context(
    shop: Any, release_runner: Any, tmp_path: Path, service: str, edit: Edit
) -> tuple[ShopEnvironment, Path]:
    """``service`` released once, edited, from a copy of its build context that the test can
    change to make a new image; the environment and that context."""
    subprocess.run([str(SHOP / "prepare"), service], check=True, capture_output=True)
    context = tmp_path / service
    shutil.copytree(SHOP / service, context, symlinks=True)
    env = shop(services=(service,), edit=edit, contexts={service: context})
    code, out, counts = released(release_runner("runbook", "--env", env.name))
    assert code == 0, f"the first release of {service} failed ({counts}):\n{out[-4000:]}"
    return env, context


def test_a_statefulset_on_delete_keeps_its_old_pod_and_the_digest_check_says_so(
    shop: Any, release_runner: Any, tmp_path: Path
) -> None:
    on_delete = replace_in("db.yaml", "    type: RollingUpdate\n", "    type: OnDelete\n")
    env, context = released_from_own_context(shop, release_runner, tmp_path, "db", on_delete)
    (context / "www" / "health").write_text('{"service":"db","version":2}\n')  # a new image
    out = assert_one_failure(release_runner("runbook", "--env", env.name, "-rfs"), "digest mismatch", "shop-db-0")
    assert "StatefulSet shop-db updates OnDelete: the controller replaces no pod" in out, (
        f"the verdict does not say the pod was left by OnDelete:\n{out[-4000:]}"
    )


def test_a_pod_no_node_can_take_fails_promptly_naming_the_schedulers_reason(shop: Any, release_runner: Any) -> None:
    nowhere = replace_in(
        "web.yaml",
        "      containers:\n",
        "      nodeSelector:\n        shop.example/tier: nowhere\n      containers:\n",
    )
    env = shop(services=("web",), edit=nowhere)
    started = time.monotonic()
    out = assert_one_failure(
        release_runner("runbook", "--env", env.name), "Unschedulable", "didn't match Pod's node affinity/selector"
    )
    took = time.monotonic() - started
    assert took < 100, f"the release took {took:.0f} s; the rollout deadline is 120 s:\n{out[-3000:]}"


@pytest.fixture
def widget_kind(admin: Any) -> Iterator[str]:
    """A CustomResourceDefinition of its own (``Widget`` in a unique group), deleted afterwards.

    No status subresource and no controller: what a manifest says under ``status`` is stored
    as it is, so a test can hand the kstatus rules a Stalled or a Ready object through apply.
    """
    group = f"shop-{uuid.uuid4().hex[:8]}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    crds = admin.dynamic.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    crds.create(body=crd)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            conditions = (crds.get(name=f"widgets.{group}").to_dict().get("status") or {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                break
            time.sleep(0.5)
        admin.dynamic.resources.invalidate_cache()  # the new kind must be discoverable
        yield f"{group}/v1"
    finally:
        with contextlib.suppress(Exception):
            crds.delete(name=f"widgets.{group}")


def widget(api_version: str, name: str, condition: str, reason: str) -> str:
    return (
        f"---\napiVersion: {api_version}\nkind: Widget\nmetadata:\n  name: {name}\nstatus:\n  conditions:\n"
        f"    - type: {condition}\n      status: 'True'\n      reason: {reason}\n      message: {name} says {reason}\n"
    )


def test_a_custom_resource_is_judged_by_the_kstatus_generic_rules(
    shop: Any, release_runner: Any, widget_kind: str
) -> None:
    def with_widgets(name: str, text: str) -> str:
        if name != "web.yaml":
            return text
        return (
            text
            + widget(widget_kind, "ready-widget", "Ready", "AllGood")
            + widget(widget_kind, "stuck-widget", "Stalled", "NoCapacity")
        )

    env = shop(services=("web",), edit=with_widgets)
    for folder in ("runbook", "checks"):  # checks alone: the record names the widgets
        out = assert_one_failure(release_runner(folder, "--env", env.name), "Widget", "stuck-widget", "NoCapacity")
        assert "ready-widget failed" not in out, f"the Ready widget was failed too:\n{out[-3000:]}"
    # The view role reads no Widget (its CRD is not aggregated to it): noted as not judged, not waited for.
    code, out, counts = released(release_runner("checks", "--env", env.name, "--kube-context", "deploybook-view"))
    assert code == 0 and counts["failed"] == 0, f"checks under the view context failed ({counts}):\n{out[-4000:]}"
    noted = "Widget/stuck-widget: not judged: context deploybook-view may not get Widget stuck-widget"
    assert noted in out, out[-4000:]


def test_recreate_releases_a_new_image_though_the_old_pods_end_killed(
    shop: Any, release_runner: Any, tmp_path: Path
) -> None:
    recreate = replace_in("web.yaml", "  replicas: 2\n", "  replicas: 2\n  strategy:\n    type: Recreate\n")
    env, context = released_from_own_context(shop, release_runner, tmp_path, "web", recreate)
    (context / "www" / "version").write_text("2\n")  # a new image: Recreate stops both old pods first
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the Recreate release failed ({counts}):\n{out[-4000:]}"
    assert "CrashLoopBackOff" not in out, f"a stopped old pod was judged a crash:\n{out[-4000:]}"


def test_a_job_released_again_with_a_new_image_runs_again(
    shop: Any, release_runner: Any, tmp_path: Path, admin: Any
) -> None:
    env, context = released_from_own_context(shop, release_runner, tmp_path, "migrate", lambda name, text: text)
    first = admin.batch.read_namespaced_job("shop-migrate", env.namespace)
    (context / "rootfs" / "tmp" / "schema-2").write_text("2\n")  # a new image
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the second release of the Job failed ({counts}):\n{out[-4000:]}"
    assert "Job/shop-migrate: replaced" in out, out[-4000:]
    again = admin.batch.read_namespaced_job("shop-migrate", env.namespace)
    assert again.metadata.uid != first.metadata.uid and again.status.succeeded == 1
    pods = admin.core.list_namespaced_pod(env.namespace, label_selector="job-name=shop-migrate").items
    image = again.spec.template.spec.containers[0].image
    assert [p.spec.containers[0].image for p in pods] == [image], "the old run's pod is gone, the new one ran"
    assert image != first.spec.template.spec.containers[0].image


def test_a_manifest_saved_with_kubectl_get_releases(shop: Any, release_runner: Any) -> None:
    # The metadata the API server sets came back with the export: sent as is, the apply is
    # refused (metadata.managedFields must be nil) or conflicts (a stale resourceVersion). The
    # status is sent, and ignored: a Service has a status subresource.
    exported = replace_in(
        "web.yaml",
        "  name: shop-web\n",
        '  name: shop-web\n  uid: 0b7e1f0e-1111-2222-3333-444455556666\n  resourceVersion: "123456"\n'
        '  generation: 7\n  creationTimestamp: "2025-01-01T00:00:00Z"\n'
        "  managedFields:\n  - manager: kubectl\n    operation: Update\n    apiVersion: apps/v1\n",
    )
    status = "status:\n  loadBalancer: {}\n"  # the Service's, the file's last document

    def edit(name: str, text: str) -> str:
        return exported(name, text) + (status if name == "web.yaml" else "")

    env = shop(services=("web",), edit=edit)
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the exported manifest did not release ({counts}):\n{out[-4000:]}"


def test_a_service_image_written_with_the_registry_and_a_tag_is_pinned_to_the_pushed_digest(
    shop: Any, release_runner: Any, cluster_ready: dict[str, str], admin: Any
) -> None:
    registry = cluster_ready["DEPLOYBOOK_REGISTRY"]
    full = replace_in("web.yaml", "          image: shop/web\n", f"          image: {registry}/shop/web:1.0\n")
    env = shop(services=("web",), edit=full)
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the release failed ({counts}):\n{out[-4000:]}"
    web = admin.apps.read_namespaced_deployment("shop-web", env.namespace)
    image = web.spec.template.spec.containers[0].image
    assert image.startswith(f"{registry}/shop/web@sha256:"), image


def test_the_test_hook_pod_of_helm_template_output_is_not_applied(shop: Any, release_runner: Any, admin: Any) -> None:
    # `helm create` puts this Pod in every chart; `helm install` and `helm upgrade` leave it out.
    hook = (
        "---\n# Source: shop/templates/tests/test-connection.yaml\napiVersion: v1\nkind: Pod\nmetadata:\n"
        '  name: shop-test-connection\n  annotations:\n    "helm.sh/hook": test\nspec:\n'
        "  containers:\n    - name: wget\n      image: busybox\n      command: [wget, shop-web:80]\n"
        "  restartPolicy: Never\n"
    )
    env = shop(services=("web",), edit=lambda name, text: text + hook if name == "web.yaml" else text)
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the release failed ({counts}):\n{out[-4000:]}"
    pods = [p.metadata.name for p in admin.core.list_namespaced_pod(env.namespace).items]
    assert pods and "shop-test-connection" not in pods, pods


def test_a_claim_that_cannot_bind_is_named_with_its_storage_class_and_event(shop: Any, release_runner: Any) -> None:
    """The scheduler says only "unbound immediate PersistentVolumeClaims"; the verdict names the
    claim, its class and the claim's own event (a class the cluster does not have)."""
    claim = (
        "---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: shop-web-data}\n"
        "spec: {accessModes: [ReadWriteOnce], storageClassName: dbk-no-such-class,"
        " resources: {requests: {storage: 1Mi}}}\n"
    )
    volume = "      volumes:\n        - {name: data, persistentVolumeClaim: {claimName: shop-web-data}}\n"
    mounted = replace_in("web.yaml", "      containers:\n", volume + "      containers:\n")
    env = shop(services=("web",), edit=lambda name, text: mounted(name, text) + (claim if name == "web.yaml" else ""))
    assert_one_failure(
        release_runner("runbook", "--env", env.name),
        "Unschedulable",
        "PersistentVolumeClaim shop-web-data is Pending: the cluster has no StorageClass dbk-no-such-class",
        'storageclass.storage.k8s.io "dbk-no-such-class" not found',
    )


STAGED_WEB = """\
FROM scratch AS runtime
COPY rootfs/ /
ARG FLAVOUR=unset
COPY www-${FLAVOUR}/ /www/
USER 10001:10001
ENTRYPOINT ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]
FROM runtime AS debug
COPY www-debug/ /www/
"""


def test_build_args_and_a_target_that_is_not_the_last_stage_make_the_image_released(
    shop: Any, release_runner: Any, tmp_path: Path
) -> None:
    """The build arg picks the files the image serves (unset, the build fails: no www-unset/),
    and the target stops before the last stage, whose /health would fail the HTTP check."""
    subprocess.run([str(SHOP / "prepare"), "web"], check=True, capture_output=True)
    context = tmp_path / "web"
    shutil.copytree(SHOP / "web", context, symlinks=True)
    (context / "Dockerfile").write_text(STAGED_WEB)
    for flavour, service in (("good", "web"), ("debug", "debug")):
        (context / f"www-{flavour}").mkdir()
        (context / f"www-{flavour}" / "health").write_text(f'{{"service":"{service}"}}\n')
    env = shop(services=("web",), contexts={"web": context})
    doc = yaml.safe_load(env.file.read_text())
    doc["services"][0].update(build_args={"FLAVOUR": "good"}, target="runtime")
    env.file.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the staged build's release failed ({counts}):\n{out[-6000:]}"
    assert "GET /health on shop-web: 200" in out, out[-4000:]


ONESHOT = """---
apiVersion: v1
kind: Pod
metadata: {name: shop-web-oneshot}
spec:
  restartPolicy: Never
  securityContext: {runAsNonRoot: true, runAsUser: 10001}
  containers:
    - name: oneshot
      image: shop/web
      command: ["/bin/sh", "-c", "echo seeding failed >&2; exit 3"]
      resources: {requests: {cpu: 10m, memory: 8Mi}}
"""


def test_a_bare_pod_that_exits_non_zero_is_one_failure_and_runs_again_once_fixed(
    shop: Any, release_runner: Any, admin: Any
) -> None:
    """A Pod of the manifests that no controller owns is judged by its own restartPolicy; fixed,
    the ended Pod is replaced (its spec cannot change, and an ended Pod would not run again)."""
    env = shop(services=("web",), edit=lambda name, text: text + ONESHOT if name == "web.yaml" else text)
    causes = (f"Pod {env.namespace}/shop-web-oneshot", "PodFailed: pod shop-web-oneshot Failed: container oneshot")
    assert_one_failure(release_runner("runbook", "--env", env.name, "-rfs"), *causes, "exited with code 3")
    assert_one_failure(release_runner("checks", "--env", env.name, "-rfs"), *causes)  # the record names the Pod
    failed = admin.core.read_namespaced_pod("shop-web-oneshot", env.namespace)
    web = env.manifests / "web.yaml"
    web.write_text(web.read_text().replace("echo seeding failed >&2; exit 3", "echo seeded"))
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))
    assert code == 0 and counts["failed"] == 0, f"the fixed bare Pod's release failed ({counts}):\n{out[-4000:]}"
    assert "Pod/shop-web-oneshot: replaced" in out, out[-4000:]
    again = admin.core.read_namespaced_pod("shop-web-oneshot", env.namespace)
    assert again.metadata.uid != failed.metadata.uid and again.status.phase == "Succeeded"
    code, out, counts = released(release_runner("runbook", "--env", env.name, "-rfs"))  # nothing changed
    assert code == 0 and "Pod/shop-web-oneshot: unchanged" in out, f"{counts}\n{out[-4000:]}"
    assert admin.core.read_namespaced_pod("shop-web-oneshot", env.namespace).metadata.uid == again.metadata.uid


METRICS_TYPO = """---
apiVersion: v1
kind: Service
metadata: {name: shop-web-metrics}
spec:
  selector: {app: shop-wbe}
  ports: [{name: metrics, port: 9100, targetPort: 8080}]
"""


def test_a_service_whose_selector_matches_no_pod_is_one_failure_naming_it(shop: Any, release_runner: Any) -> None:
    """A second Service in web's manifests with a typo in its selector: the first one answers,
    and the release says the second fronts nothing."""
    env = shop(services=("web",), edit=lambda name, text: text + METRICS_TYPO if name == "web.yaml" else text)
    causes = (f"Service {env.namespace}/shop-web-metrics (web.yaml) selects no pod", "app=shop-wbe")
    for folder in ("runbook", "checks"):  # checks alone: the record names the Services web applied
        assert_one_failure(release_runner(folder, "--env", env.name, "-rfs"), *causes)


def test_a_bare_pod_that_runs_is_rolled_out_and_its_digest_checked(shop: Any, release_runner: Any) -> None:
    """The bare Pod runs the service's image: rolled out once Ready, its container counted by
    the digest check beside the Deployment's two."""
    running = ONESHOT.replace("restartPolicy: Never", "restartPolicy: Always").replace(
        '["/bin/sh", "-c", "echo seeding failed >&2; exit 3"]', '["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]'
    )
    env = shop(services=("web",), edit=lambda name, text: text + running if name == "web.yaml" else text)
    for folder in ("runbook", "checks"):  # checks alone: the record names the Pod
        code, out, counts = released(release_runner(folder, "--env", env.name, "-rfs"))
        assert code == 0 and counts["failed"] == 0, f"a running bare Pod failed {folder} ({counts}):\n{out[-4000:]}"
        assert "Pod/shop-web-oneshot: Pod is Ready" in out, out[-4000:]
        assert re.search(r"digests \| running sha256:[0-9a-f]{12}\.\.\. in 3 container\(s\)", out), out[-4000:]
