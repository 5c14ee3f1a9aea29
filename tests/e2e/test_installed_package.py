"""deploybook as a team gets it: the built wheel in a fresh virtualenv, `deploybook init`, a release.

Outside this repository: the wheel is built from it, installed into a virtualenv of its own
(its dependencies from the package index, as a team's would come), `deploybook init` writes
a project, and in that project `pytest runbook --env local` releases the example service to
the local stack, then `pytest checks --env local` passes against what runs.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv outside the repository with the wheel built from it installed; its bin/."""
    base = tmp_path_factory.mktemp("installed")
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base), "."],
        cwd=ROOT,
    )
    (wheel,) = base.glob("deploybook-*.whl")
    run([sys.executable, "-m", "venv", str(base / "venv")], cwd=base)
    run([str(base / "venv" / "bin" / "pip"), "install", "-q", str(wheel)], cwd=base)
    return base / "venv" / "bin"


@pytest.fixture
def project(installed: Path, tmp_path: Path, admin: Any) -> Iterator[Path]:
    """`deploybook init` of a team's project, its namespace made unique and deleted afterwards."""
    directory = tmp_path / "team-runbook"
    out = run([str(installed / "deploybook"), "init", str(directory), "--no-git"], cwd=tmp_path)
    assert "pytest runbook --env local" in out
    namespace = f"example-{uuid.uuid4().hex[:8]}"
    local = directory / "environments" / "local.yaml"
    local.write_text(local.read_text().replace("namespace: example-local", f"namespace: {namespace}"))
    identity = ["-c", "user.name=team", "-c", "user.email=team@example.invalid"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], [*identity, "commit", "-qm", "our runbook"]):
        run(["git", *args], cwd=directory)
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory)
    try:
        yield directory
    finally:
        admin.core.delete_namespace(namespace, propagation_policy="Background")


def test_a_team_releases_its_project_from_the_installed_package(
    installed: Path, project: Path, cluster_ready: dict[str, str]
) -> None:
    env = {k: v for k, v in cluster_ready.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{installed}:{env['PATH']}"
    pytest_ = [str(installed / "pytest"), "-p", "no:cacheprovider"]
    release = run([*pytest_, "runbook", "--env", "local"], cwd=project, env=env)
    assert "passed" in release and "deploybook: verdict: passed" in release, release[-3000:]
    assert "hello" in release and "failed" not in release.split("verdict")[-1]
    assert list(project.glob("reports/local/*/release.json")) and list(project.glob("reports/local/*/index.html"))
    checks = run([*pytest_, "checks", "--env", "local"], cwd=project, env=env)
    assert "deploybook: verdict: passed (checks" in checks, checks[-3000:]
    own = run(pytest_, cwd=project, env=env)  # a bare pytest runs the project's own tests
    assert "1 passed" in own and "deploybook: release" not in own
