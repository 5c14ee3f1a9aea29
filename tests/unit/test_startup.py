"""Collecting a runbook loads no client: a run pays for Docker, Kubernetes and HTTP only when it uses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("docker", "kubernetes", "requests", "urllib3")
# The plugin's entry, what it imports, and the packages on the way to them.
ENTRY = {
    "deploybook.plugin",
    "deploybook.plugin.hooks",
    "deploybook.plugin.hookspecs",
    "deploybook.plugin.options",
    "deploybook.release",
    "deploybook.release.names",
}

RECORDER = """
import json, os, sys

def pytest_collection_finish(session):
    with open(os.environ["MODULES_FILE"], "w") as f:
        json.dump(sorted(sys.modules), f)
"""


@pytest.mark.parametrize("folder", ["runbook", "checks"])
def test_collecting_imports_no_client(folder: str, tmp_path: Path) -> None:
    (tmp_path / "record_modules.py").write_text(RECORDER)
    password = tmp_path / "password"
    password.write_text("not-a-real-password\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "MODULES_FILE": str(tmp_path / "modules.json"),
        "DEPLOYBOOK_REGISTRY": "localhost:5999",
        "DEPLOYBOOK_REGISTRY_USER": "someone",
        "DEPLOYBOOK_REGISTRY_PASSWORD_FILE": str(password),
        "DEPLOYBOOK_REGISTRY_CA": str(password),
    }
    cmd = [sys.executable, "-m", "pytest", folder, "--env", "local", "--collect-only", "-q", "-p", "record_modules"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    modules = (tmp_path / "modules.json").read_text()
    loaded = [name for name in CLIENTS if f'"{name}"' in modules]
    assert loaded == [], f"collecting {folder} imported {loaded}"
    assert '"deploybook.plugin.hooks"' in modules


def test_a_projects_own_tests_load_only_the_plugins_entry(tmp_path: Path) -> None:
    """deploybook is imported by every pytest run of its environment: one that is not a release
    pays for its entry (options, hook specs) and nothing of the engine."""
    (tmp_path / "record_modules.py").write_text(RECORDER)
    (tmp_path / "test_own.py").write_text("def test_own():\n    assert 1 + 1 == 2\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MODULES_FILE": str(tmp_path / "modules.json")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "record_modules", "-p", "no:cacheprovider"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert "deploybook.plugin.hooks" in modules
    engine = [m for m in modules if m.startswith("deploybook.") and m not in ENTRY]
    assert engine == [], f"a run of a project's own tests imported {engine}"
    assert "yaml" not in modules
