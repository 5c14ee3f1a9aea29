"""Checks alone against a namespace where nothing runs: one clear failure, not one per check.

A namespace that exists and is empty, with no release record, and the same namespace with a
``--release FILE`` whose workloads do not exist there: each run ends at the session start with
"nothing is recorded or running in namespace ..." and runs no check of any service.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

Release = Any  # tests/e2e/conftest.py: Release

NOTHING = "nothing is recorded or running in namespace"


@pytest.fixture
def empty_namespace(throwaway_environment: Any, admin: Any) -> Any:
    """A throwaway environment whose namespace exists and holds nothing."""
    env = throwaway_environment(services=("gateway", "worker"))
    admin.core.create_namespace({"metadata": {"name": env.namespace}})
    return env


def assert_one_clear_failure(run: Release, namespace: str) -> str:
    __tracebackhide__ = True
    code = run.wait(timeout_s=300)
    out = run.output
    assert code != 0, f"checks passed in an empty namespace:\n{out[-3000:]}"
    assert f"{NOTHING} {namespace}" in out, f"no clear verdict:\n{out[-3000:]}"
    ran = re.findall(r"\b(\d+) (passed|failed|skipped)\b", out)
    assert not ran, f"checks ran although nothing is there ({ran}):\n{out[-3000:]}"
    assert out.count(NOTHING) == 1, f"the verdict is said more than once:\n{out[-3000:]}"
    return out


def test_no_record_and_nothing_running_is_one_failure(empty_namespace: Any, release_runner: Any) -> None:
    run = release_runner("checks", "--env", empty_namespace.name)
    out = assert_one_clear_failure(run, empty_namespace.namespace)
    assert "no release record (ConfigMap deploybook-release)" in out


def test_a_record_whose_workloads_are_absent_is_one_failure(
    empty_namespace: Any, release_runner: Any, tmp_path: Path
) -> None:
    from deploybook.evidence.record import ReleaseRecord, ServiceRecord

    services = {
        "gateway": ServiceRecord("gateway", workloads=("Deployment/dx29-gateway-deployment",)),
        "worker": ServiceRecord("worker", workloads=("Deployment/dx29-worker-deployment",)),
    }
    record = ReleaseRecord(
        run_id="judge-absent",
        environment=empty_namespace.name,
        namespace=empty_namespace.namespace,
        outcome="passed",
        started="2026-01-01T00:00:00+00:00",
        finished="2026-01-01T00:01:00+00:00",
        services=services,
    )
    file = tmp_path / "release.json"
    file.write_text(record.to_json())
    run = release_runner("checks", "--env", empty_namespace.name, "--release", str(file))
    out = assert_one_clear_failure(run, empty_namespace.namespace)
    assert "the --release file names Deployment/dx29-gateway-deployment, Deployment/dx29-worker-deployment" in out
