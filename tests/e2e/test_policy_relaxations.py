"""Policies on the real stack: a root image passes only where the environment relaxes non_root.

The gateway is built from a copy of its context whose image runs as root (``USER 0``), into a
throwaway environment whose manifest copy drops the pod's ``runAsUser``. Relaxed for that
service with a reason, the release passes, and the record and the report name the relaxation
and its reason. Not relaxed, the same release fails its containers check naming the policy
and how to relax it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

Release = Any  # tests/e2e/conftest.py: Release, ThrowawayEnvironment
ThrowawayEnvironment = Any

ROOT = Path(__file__).resolve().parents[2]
REASON = "the vendor's base image runs as root"


def root_context(tmp_path: Path) -> Path:
    """The gateway's build context with an image that runs as root."""
    subprocess.run([str(ROOT / "apps" / "dx29" / "prepare"), "gateway"], check=True, capture_output=True)
    context = tmp_path / "root-gateway"
    shutil.copytree(ROOT / "apps" / "dx29" / "gateway", context, symlinks=True)
    dockerfile = context / "Dockerfile"
    dockerfile.write_text(re.sub(r"^USER .*$", "USER 0:0", dockerfile.read_text(), flags=re.M))
    return context


def as_root(name: str, text: str) -> str:
    """The manifest copy without the pod's non-root user, so the image's own user runs."""
    if name != "gateway.yaml":
        return text
    kept = [ln for ln in text.splitlines() if not re.match(r"\s+(runAsNonRoot|runAsUser|runAsGroup):", ln)]
    return "\n".join(kept).replace("      securityContext:\n      containers:", "      containers:") + "\n"


def root_environment(make: Callable[..., ThrowawayEnvironment], tmp_path: Path, relax: bool) -> ThrowawayEnvironment:
    env = make(services=("gateway",), contexts={"gateway": root_context(tmp_path)}, edit=as_root)
    if relax:
        doc = yaml.safe_load(env.file.read_text())
        doc["services"][0]["policies"] = {"non_root": {"enforce": False, "reason": REASON}}
        env.file.write_text(yaml.safe_dump(doc, sort_keys=False))
    return env


def test_a_root_image_passes_where_non_root_is_relaxed_and_the_evidence_says_why(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    stack_kit: Any,
    tmp_path: Path,
) -> None:
    env = root_environment(throwaway_environment, tmp_path, relax=True)
    run = release_runner("runbook", "--env", env.name)
    code = run.wait(600)
    out = run.output
    assert code == 0, out[-4000:]
    assert "uid 0" in out, out[-4000:]  # it really ran as root
    record = stack_kit.records_of(tmp_path / "reports", env.name)[-1]
    assert record["outcome"] == "passed"
    (relaxed,) = record["relaxed_policies"]
    assert {k: relaxed[k] for k in ("service", "policy", "enforce", "reason")} == {
        "service": "gateway",
        "policy": "non_root",
        "enforce": False,
        "reason": REASON,
    }
    assert relaxed["where"].startswith(f"{env.file}:"), relaxed
    properties = tmp_path / "reports" / env.name / record["run_id"] / "allure-results" / "environment.properties"
    assert f"policy.relaxed.gateway.non_root={REASON} (" in properties.read_text()


def test_the_same_root_image_fails_without_a_relaxation_naming_the_policy_and_the_remedy(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    stack_kit: Any,
    tmp_path: Path,
) -> None:
    env = root_environment(throwaway_environment, tmp_path, relax=False)
    run = release_runner("runbook", "--env", env.name)
    code = run.wait(600)
    out = run.output
    assert code != 0, out[-4000:]
    assert "runs as root (uid 0), and policy non_root expects a non-root user" in out, out[-4000:]
    assert 'services: {gateway: {policies: {non_root: {enforce: false, reason: "why"}}}}' in out, out[-4000:]
    record = stack_kit.records_of(tmp_path / "reports", env.name)[-1]
    assert record["outcome"] == "failed" and record["relaxed_policies"] == []
