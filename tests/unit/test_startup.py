"""Collecting a runbook loads no client: a run pays for Docker, Kubernetes and HTTP only when it uses them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("docker", "kubernetes", "requests", "urllib3")

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
