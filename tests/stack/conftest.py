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
    config.addinivalue_line("markers", "lifecycle: stops and restarts the local stack; `make test` runs these last")


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

    def proc(self, *args: str, input: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        """Runs a command that may fail; the finished process, for its exit code and stderr."""
        env = dict(self.env, **extra)
        return subprocess.run(args, capture_output=True, text=True, env=env, input=input, timeout=300)

    def json(self, *args: str) -> dict:
        return json.loads(self("kubectl", *args, "-o", "json"))


@pytest.fixture
def sh(env: dict[str, str]) -> Shell:
    """Runs a command against the stack; fails the test with its output."""
    return Shell(env)


class Git:
    """git as a pipeline's client runs it against the stack's git server: no system or
    global configuration of this machine, the stack's CA (GIT_SSL_CAINFO: this machine's
    environment sets it to the system bundle, and it beats http.sslCAInfo), no prompts,
    and the credentials from the stack's credential helper for the server's URL only."""

    def __init__(self, sh: Shell, home: Path, *, credentials: bool = True) -> None:
        self.sh = sh
        self.url = sh.env["DEPLOYBOOK_GIT_URL"]
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "HOME": str(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
            "GIT_SSL_CAINFO": sh.env["DEPLOYBOOK_GIT_CA"],
            "GIT_AUTHOR_NAME": "stack-test",
            "GIT_AUTHOR_EMAIL": "stack-test@deploybook.local",
            "GIT_COMMITTER_NAME": "stack-test",
            "GIT_COMMITTER_EMAIL": "stack-test@deploybook.local",
        }
        self.config = ["-c", f"credential.{self.url}.helper={sh.env['DEPLOYBOOK_GIT_CREDENTIAL_HELPER']}"]
        if not credentials:
            self.config = []

    def repo_url(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def __call__(self, *args: str, check: bool = True, **extra: str) -> str:
        return self.sh("git", *self.config, *args, check=check, **{**self.env, **extra})

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """git that may fail: the finished process, for its exit code and stderr."""
        env = dict(self.sh.env, **self.env, **extra)
        return subprocess.run(["git", *self.config, *args], capture_output=True, text=True, env=env, timeout=120)

    def heads(self, name: str) -> dict[str, str]:
        """Branch -> commit, as the server advertises them."""
        out = self("ls-remote", "--heads", self.repo_url(name))
        return {ref.removeprefix("refs/heads/"): sha for sha, ref in (line.split() for line in out.splitlines())}


@pytest.fixture
def git(sh: Shell, tmp_path: Path) -> Git:
    """git with the stack's credentials for its git server (see Git)."""
    return Git(sh, tmp_path / "git-home")


@pytest.fixture
def git_client(sh: Shell, tmp_path: Path):
    """Makes a Git of its own: git_client(name, credentials=False) has no credential helper."""

    def make(name: str, *, credentials: bool = True) -> Git:
        return Git(sh, tmp_path / name, credentials=credentials)

    return make


@pytest.fixture
def stack_command():
    """Runs stack/COMMAND and returns the finished process."""

    def stack(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK / command)], capture_output=True, text=True, timeout=900)

    return stack
