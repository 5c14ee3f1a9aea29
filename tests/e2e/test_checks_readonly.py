"""Checks-only against the live release, with nothing but the read-only context.

`pytest checks --env local --kube-context deploybook-view` runs as an operator would (a
subprocess with the stack's environment). It must pass; the container checks that need exec
skip with the missing permission as the reason; and every object of the namespace keeps its
resourceVersion, so the run changed nothing. When the namespace holds no release yet, one is
made first with `pytest runbook --env local` (the admin context, as a release is).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "dx29-local"
LOCK_WAIT_S = 900
# Events are written by the cluster itself (probes, kubelet) at any time.
VOLATILE = {"events", "events.events.k8s.io"}


def kubectl(env: dict[str, str], *args: str, context: str = "deploybook-admin") -> str:
    proc = subprocess.run(
        ["kubectl", "--context", context, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def release_in_progress(env: dict[str, str]) -> bool:
    leases = json.loads(kubectl(env, "-n", NAMESPACE, "get", "leases", "-o", "json"))["items"]
    return any(lease["spec"].get("holderIdentity") for lease in leases)


def wait_for_quiet_namespace(env: dict[str, str]) -> None:
    """Another release may hold the environment's Lease: wait until it is done (read only)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while release_in_progress(env):
        assert time.monotonic() < deadline, f"a release held the lock in {NAMESPACE} for {LOCK_WAIT_S}s"
        time.sleep(5)


def namespace_versions(env: dict[str, str]) -> dict[str, str]:
    """kind/name -> resourceVersion of every listable object in the namespace."""
    kinds = kubectl(env, "api-resources", "--verbs=list", "--namespaced", "-o", "name").split()
    kinds = [k for k in kinds if k not in VOLATILE]
    items = json.loads(kubectl(env, "-n", NAMESPACE, "get", ",".join(kinds), "-o", "json"))["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in items}


def run_pytest(env: dict[str, str], *args: str, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--env", "local", "-p", "no:cacheprovider", "-rs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def live_release(cluster_ready: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The stack environment, once dx29-local holds a release record and no release is running."""
    env = cluster_ready
    names = kubectl(env, "get", "namespaces", "-o", "name").split()
    has_record = (
        f"namespace/{NAMESPACE}" in names
        and "configmap/deploybook-release" in kubectl(env, "-n", NAMESPACE, "get", "configmaps", "-o", "name").split()
    )
    if not has_record:
        reports = tmp_path_factory.mktemp("release")
        proc = run_pytest(env, "runbook", "--reports-dir", str(reports))
        assert proc.returncode == 0, f"release failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    wait_for_quiet_namespace(env)
    return env


def test_view_context_cannot_write(live_release: dict[str, str]) -> None:
    """The context under test really is read-only (else the test below would prove little)."""
    for verb, resource in (
        ("create", "pods"),
        ("patch", "deployments"),
        ("delete", "configmaps"),
        ("create", "pods/exec"),
    ):
        proc = subprocess.run(
            ["kubectl", "--context", "deploybook-view", "-n", NAMESPACE, "auth", "can-i", verb, resource],
            env=live_release,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.stdout.strip() == "no", f"deploybook-view may {verb} {resource}: {proc.stdout}"


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_checks_pass_read_only_and_change_nothing(
    live_release: dict[str, str], tmp_path: Path, workers: list[str]
) -> None:
    env = live_release
    for _ in range(3):  # a release by someone else in between makes a snapshot moot: redo
        wait_for_quiet_namespace(env)
        before = namespace_versions(env)
        proc = run_pytest(
            env, "checks", "--kube-context", "deploybook-view", "--reports-dir", str(tmp_path / "reports"), *workers
        )
        after = namespace_versions(env)
        if not release_in_progress(env) and not _changed_by_a_release(before, after):
            break
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"checks failed under deploybook-view:\n{out[-5000:]}"
    assert "may not exec into pods (needs create pods/exec" in out, "container checks neither ran nor skipped"
    assert "HTTP ok" in out and "deployment status" in out, f"no status table with HTTP verdicts:\n{out[-3000:]}"
    assert "rollout | Deployment/dx29-gateway-deployment" in out, "the waited-on workload was not shown"
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    added = sorted(set(after) - set(before))
    assert not changed and not added, f"checks-only changed the cluster: {changed}, new: {added}"


def _changed_by_a_release(before: dict[str, str], after: dict[str, str]) -> bool:
    """A Deployment or the release record moved: a release ran meanwhile, not the checks."""
    moved = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    return any(k.startswith(("Deployment/", "Lease/")) or k == "ConfigMap/deploybook-release" for k in moved)
