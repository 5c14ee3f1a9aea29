"""Shared fixtures for deploybook's own tests.

Tests are marked by their folder: ``tests/integration`` -> ``integration`` (real Docker
engine and registry), ``tests/e2e`` -> ``e2e`` (the whole local stack), so
``pytest -m "not e2e"`` or ``pytest -m integration`` select tiers without naming paths.
A tier that needs the stack fails with the reason when the stack is not up: a release
test that silently skips proves nothing.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the tier its folder names."""
    for item in items:
        parts = Path(str(item.path)).relative_to(ROOT).parts
        if len(parts) > 1 and parts[0] == "tests" and parts[1] in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[1]))


def read_stack_env() -> dict[str, str]:
    """The variables ``eval "$(stack/env)"`` would export, as a dict ({} if unavailable)."""
    script = ROOT / "stack" / "env"
    if not script.is_file():
        return {}
    proc = subprocess.run([str(script)], capture_output=True, text=True, check=False)
    values: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        words = shlex.split(line.removeprefix("export "))
        if words and "=" in words[0]:
            key, _, value = words[0].partition("=")
            values[key] = value
    return values


def stack_component_up(name: str) -> bool:
    """True when ``stack/status`` reports the component ``name`` as up."""
    proc = subprocess.run([str(ROOT / "stack" / "status")], capture_output=True, text=True, check=False)
    return any(line.split()[:2] == [name, "up"] for line in proc.stdout.splitlines() if line.split())


@pytest.fixture(scope="session")
def stack_env() -> dict[str, str]:
    """The process environment plus the local stack's exported variables."""
    values = read_stack_env()
    if not values:
        pytest.fail("the local stack exports nothing (stack/env): bring it up with stack/up", pytrace=False)
    return {**os.environ, **values}


@pytest.fixture(scope="session")
def cluster_ready(stack_env: dict[str, str]) -> dict[str, str]:
    """The stack environment, once its Kubernetes API server is up."""
    if not stack_component_up("kube-apiserver"):
        pytest.fail("the local stack's kube-apiserver is not up (stack/status): run stack/up", pytrace=False)
    return stack_env
