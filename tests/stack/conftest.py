"""Fixtures for the local stack's own tests: they talk to the stack directly
with kubectl and the docker CLI, the way an operator checks a cluster by hand,
so that they prove the stack without depending on deploybook's engine."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lifecycle: stops and restarts the local stack; `make test` runs these last"
    )


def stack_env() -> dict[str, str]:
    """The environment `eval "$(stack/env)"` would give a shell."""
    out = subprocess.run([str(STACK / "env")], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return env


def run(*args: str, env: dict[str, str], input: str | None = None, check: bool = True) -> str:
    """Runs a command, failing with its output when it fails."""
    proc = subprocess.run(args, capture_output=True, text=True, env=env, input=input, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture(scope="session")
def env() -> dict[str, str]:
    """Client environment for the running stack; fails when the stack is down."""
    status = subprocess.run([str(STACK / "status")], capture_output=True, text=True)
    if status.returncode != 0:
        pytest.fail(f"the local stack is not up (run stack/up):\n{status.stdout}")
    return stack_env()


@pytest.fixture
def namespace(sh: Shell) -> Iterator[str]:
    """A namespace of its own, deleted even when the test fails."""
    name = f"stack-test-{uuid.uuid4().hex[:8]}"
    sh("kubectl", "create", "namespace", name)
    try:
        yield name
    finally:
        sh("kubectl", "delete", "namespace", name, "--wait=false", check=False)


class Shell:
    """Runs commands against the stack with its client environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, input: str | None = None, check: bool = True, **extra: str) -> str:
        return run(*args, env=dict(self.env, **extra), input=input, check=check)

    def json(self, *args: str) -> dict:
        return json.loads(self("kubectl", *args, "-o", "json"))


@pytest.fixture
def sh(env: dict[str, str]) -> Shell:
    """Runs a command against the stack; fails the test with its output."""
    return Shell(env)


@pytest.fixture
def stack_command():
    """Runs stack/COMMAND and returns the finished process."""
    def stack(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK / command)], capture_output=True, text=True, timeout=900)
    return stack
