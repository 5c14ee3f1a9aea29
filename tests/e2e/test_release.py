"""The whole release against the real local stack: build, push, apply, checks, record.

Runs ``pytest runbook --env local`` as an operator would (a subprocess with the stack's
environment), then looks at the cluster on its own: every pod of every service runs the
digest the record says was pushed. A second release with no change is a no-op: no
Deployment gets a new generation and the record's digests stay the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "dx29-local"


def run_release(env: dict[str, str], reports: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """One ``pytest runbook --env local`` in a subprocess; its exit and its release record."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "runbook",
            "--env",
            "local",
            "--reports-dir",
            str(reports),
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    records = sorted(reports.glob("local/*/release.json"), key=lambda p: p.stat().st_mtime)
    assert records, f"no release.json written; exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return proc, json.loads(records[-1].read_text())


def kubectl_json(env: dict[str, str], *args: str) -> Any:
    out = subprocess.run(
        ["kubectl", "--context", "deploybook-admin", "-n", NAMESPACE, *args, "-o", "json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def running_digests(env: dict[str, str]) -> dict[str, set[str]]:
    """Image repository -> digests of the running containers (from imageID)."""
    found: dict[str, set[str]] = {}
    for pod in kubectl_json(env, "get", "pods")["items"]:
        if pod["status"].get("phase") != "Running":
            continue
        # The spec names the pinned reference; the status's image may be the local image id.
        spec_images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
        for status in pod["status"].get("containerStatuses", []):
            repository = spec_images[status["name"]].split("@")[0]
            found.setdefault(repository, set()).add(status["imageID"].rsplit("@", 1)[-1])
    return found


def generations(env: dict[str, str]) -> dict[str, int]:
    return {
        d["metadata"]["name"]: d["metadata"]["generation"] for d in kubectl_json(env, "get", "deployments")["items"]
    }


def test_release_then_rerun_is_a_no_op(cluster_ready: dict[str, str], tmp_path: Path) -> None:
    first, record = run_release(cluster_ready, tmp_path / "reports")
    assert first.returncode == 0, f"release failed:\n{first.stdout[-4000:]}\n{first.stderr[-2000:]}"
    assert record["outcome"] == "passed" and record["environment"] == "local"
    assert record["cluster"]["server"].startswith("https://")
    assert set(record["services"]) == {"gateway", "annotation", "terms", "worker"}
    running = running_digests(cluster_ready)
    for name, svc in record["services"].items():
        assert svc["digest"].startswith("sha256:") and svc["manifests"], name
        assert running.get(svc["image"]) == {svc["digest"]}, f"{name}: running {running.get(svc['image'])}"
    kept = kubectl_json(cluster_ready, "get", "configmap", "deploybook-release")
    assert json.loads(kept["data"]["release.json"])["run_id"] == record["run_id"]
    leases = kubectl_json(cluster_ready, "get", "leases")["items"]
    assert not [lease for lease in leases if lease["metadata"]["name"] == "deploybook-release"]

    before = generations(cluster_ready)
    second, again = run_release(cluster_ready, tmp_path / "reports")
    assert second.returncode == 0, f"second release failed:\n{second.stdout[-4000:]}"
    assert again["run_id"] != record["run_id"]
    if again["git"]["commit"] != record["git"]["commit"]:
        pytest.fail("the checkout moved between the two releases; the no-op comparison needs the same commit")
    assert generations(cluster_ready) == before, "an unchanged release rolled a Deployment"
    for name, svc in again["services"].items():
        assert svc["digest"] == record["services"][name]["digest"], name
        assert svc["deployed_by"] == record["services"][name]["deployed_by"], name
