"""Fixtures the plugin provides to runbook stages and checks (names are a contract).

``environment``, ``release``, ``kube``, ``docker_client``, ``registry`` are per session;
``service`` is one service of the environment (tests taking it run once per service);
``progress`` writes live progress lines for the running test's service and stage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from deploybook.config.environment import Environment, Service
from deploybook.errors import BuildError, ConfigError
from deploybook.release.session import connect_cluster
from deploybook.release.state import RUN_STATE, RunState

if TYPE_CHECKING:
    import docker

    from deploybook.cluster.connect import KubeClients
    from deploybook.images.registry import RegistryAuth, RegistryClient


@pytest.fixture(scope="session")
def release(request: pytest.FixtureRequest) -> RunState:
    """The run state: run id, run folder, per-service results and the record built upon.

    In a checks-only run without ``--release``, the record kept in the cluster says what
    should be running (``release.source_record``; ``release.expected_digest(name)``).
    """
    state = request.config.stash.get(RUN_STATE, None)
    if state is None:
        pytest.fail("no release: run runbook/ or checks/ with --env NAME", pytrace=False)
    if state.mode == "checks" and state.source_record is None:
        from deploybook.evidence.record import load_from_cluster

        state.source_record = load_from_cluster(request.getfixturevalue("kube"), state.env.cluster.namespace)
    return state


@pytest.fixture(scope="session")
def environment(release: RunState) -> Environment:
    """The loaded, validated environment named by ``--env``."""
    return release.env


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> KubeClients:
    """API clients for the environment's cluster (or the ``--kube-context`` given)."""
    state = request.config.stash.get(RUN_STATE, None)
    if state is None:
        pytest.fail("no environment: run with --env NAME", pytrace=False)
    return connect_cluster(request.config, state)


@pytest.fixture(scope="session")
def docker_client(environment: Environment) -> Iterator[docker.DockerClient]:
    """The Docker engine from ``DOCKER_HOST`` (as the docker CLI finds it), checked to answer."""
    import docker

    where = os.environ.get("DOCKER_HOST", "the default Docker socket")
    try:
        client = docker.from_env(timeout=int(environment.timeouts.build))
        client.ping()
    except docker.errors.DockerException as e:
        raise BuildError(
            f"Docker engine not reachable: {e}",
            source=where,
            hint='start the engine or set DOCKER_HOST (local stack: eval "$(stack/env)")',
        ) from e
    yield client
    client.close()


def resolve_registry_auth(environment: Environment) -> RegistryAuth | None:
    """The registry credentials the environment file refers to.

    A reference that cannot be resolved (an unset variable, a missing file) is a
    ConfigError naming the environment file, the line and key of the reference, and the
    variable or file: the plugin calls this before anything runs, so it is never found
    late, after the lock is taken and the images are built.
    """
    from deploybook.config.environment import key_line
    from deploybook.images.registry import resolve_credentials

    reg = environment.registry
    try:
        return resolve_credentials(
            reg.address, username=reg.username, password_env=reg.password_env, password_file=reg.password_file
        )
    except ConfigError as e:
        key = next((f"registry.{k}" for k in ("password_env", "password_file") if getattr(reg, k)), None)
        if e.file or key is None:
            raise
        raise ConfigError(
            e.message, file=str(environment.file), line=key_line(environment.file, key), key=key, hint=e.hint
        ) from e


@pytest.fixture(scope="session")
def registry_auth(environment: Environment) -> RegistryAuth | None:
    """Credentials for the environment's registry, from the reference in the environment file."""
    return resolve_registry_auth(environment)


@pytest.fixture(scope="session")
def registry(environment: Environment, registry_auth: RegistryAuth | None) -> RegistryClient:
    """The registry's v2 API with the environment's credentials and CA."""
    from deploybook.images.registry import RegistryClient

    reg = environment.registry
    return RegistryClient(reg.address, registry_auth, ca_file=reg.ca_file, timeout=environment.timeouts.http)


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Service:
    """One service of the environment; a test taking it runs once per service."""
    if not hasattr(request, "param"):
        pytest.fail("'service' is parametrized from --env NAME; run runbook/ or checks/ with --env", pytrace=False)
    return request.param  # type: ignore[no-any-return]


class Progress:
    """Writes ``service stage | text`` lines to the terminal while a test runs.

    Output capture is suspended for each line so the operator sees progress live; repeated
    identical lines (progress bars) are shown once.
    """

    def __init__(self, config: pytest.Config, label: str) -> None:
        self.config = config
        self.label = label
        self.last = ""

    def __call__(self, text: Any) -> None:
        line = str(text).rstrip()
        if not line or line == self.last:
            return
        self.last = line
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if tr is None or capman is None:
            return
        with capman.global_and_fixture_disabled():
            tr.ensure_newline()
            tr.write_line(f"  {self.label} | {line[:160]}")


@pytest.fixture
def progress(request: pytest.FixtureRequest) -> Progress:
    """A callable printing live progress lines labelled with the test's service and stage."""
    marker = request.node.get_closest_marker("stage")
    stage = str(marker.args[0]) if marker else "check"
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    svc = params.get("service")
    name = getattr(svc, "name", "") or "-"
    return Progress(request.config, f"{name:<11} {stage:<5}")
