"""Fixtures for integration tests: the local stack's real Docker engine and TLS registry.

The stack's client settings come from ``stack/env`` (DOCKER_HOST, DEPLOYBOOK_REGISTRY, its CA,
user and password file). When the stack is not up the tests fail and say so: CI starts it
first (``make test``). Every image and container a test makes carries a unique name and is
removed afterwards, even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pytest

from deploybook.images.credentials import RegistryAuth, resolve_credentials
from deploybook.images.registry import RegistryClient

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "apps" / "dx29"
SERVICES = ("gateway", "annotation", "terms", "worker")


@dataclass(frozen=True)
class Stack:
    """The local stack's client settings, as ``eval "$(stack/env)"`` exports them."""

    docker_host: str
    registry: str
    ca_file: str
    user: str
    password_file: str


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The running local stack's settings; fails naming stack/status when it is down."""
    status = subprocess.run([str(ROOT / "stack" / "status")], capture_output=True, text=True, check=False)
    states: dict[str, str] = {}
    for line in status.stdout.splitlines():  # "NAME  up|down  detail", then a summary
        words = line.split()
        if len(words) >= 2:
            states.setdefault(words[0], words[1])
    if states.get("dockerd") != "up" or states.get("registry") != "up":
        pytest.fail(f"the local stack's Docker engine and registry are not up (run stack/up):\n{status.stdout}")
    out = subprocess.run([str(ROOT / "stack" / "env")], capture_output=True, text=True, check=True).stdout
    env: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    return Stack(
        docker_host=env["DOCKER_HOST"],
        registry=env["DEPLOYBOOK_REGISTRY"],
        ca_file=env["DEPLOYBOOK_REGISTRY_CA"],
        user=env["DEPLOYBOOK_REGISTRY_USER"],
        password_file=env["DEPLOYBOOK_REGISTRY_PASSWORD_FILE"],
    )


@pytest.fixture(scope="session")
def engine(stack: Stack) -> Iterator[docker.DockerClient]:
    """A Docker SDK client of the stack's engine (not whatever DOCKER_HOST the shell has)."""
    client = docker.DockerClient(base_url=stack.docker_host, timeout=300)
    try:
        client.ping()
    except docker.errors.DockerException as e:
        pytest.fail(f"the stack's Docker engine at {stack.docker_host} does not answer: {e}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry_auth(stack: Stack) -> RegistryAuth:
    """The stack registry's credentials, resolved from its password file."""
    auth = resolve_credentials(stack.registry, username=stack.user, password_file=stack.password_file)
    assert auth is not None
    return auth


@pytest.fixture(scope="session")
def registry_client(stack: Stack, registry_auth: RegistryAuth) -> RegistryClient:
    """A v2 client of the stack's registry that trusts the stack's CA."""
    return RegistryClient(stack.registry, registry_auth, ca_file=stack.ca_file)


@pytest.fixture(scope="session")
def prepared_app() -> Path:
    """apps/dx29 with every build context filled by its ``prepare`` step."""
    done = subprocess.run([str(APP / "prepare")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"apps/dx29/prepare failed:\n{done.stdout}{done.stderr}"
    return APP


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id that keeps this run's tags apart from other runs and xdist workers."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def cleanup_images(engine: docker.DockerClient) -> Iterator[list[str]]:
    """Image references to remove at the end of the session."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(docker.errors.DockerException):  # already gone
            engine.images.remove(ref, noprune=False)


@pytest.fixture
def containers(engine: docker.DockerClient) -> Iterator[list[Any]]:
    """Containers started by a test; force-removed afterwards."""
    started: list[Any] = []
    yield started
    for container in started:
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Gives loopback ports free right now (the stack's engine has no bridge: containers use
    host networking, so each one listens on a port of its own)."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick


@pytest.fixture
def http_json() -> Callable[[str], tuple[int, dict[str, Any]]]:
    """GETs a loopback URL and decodes its JSON, waiting up to 10 s for the server to listen."""
    return _get_json


def _get_json(url: str, *, wait_s: float = 10.0) -> tuple[int, dict[str, Any]]:
    """GET ``url`` (loopback only), retrying until the server answers or ``wait_s`` passes."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")
        except (urllib.error.URLError, ConnectionError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {wait_s} s: {e}") from e
            time.sleep(0.2)
