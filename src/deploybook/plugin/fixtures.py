"""Fixtures the plugin provides to runbook stages and checks (names are a contract).

``release`` is what a test sees of the run: it waits for the outcome of the engine task the
test shows (``release.wait(service, "build")``), writing every service's progress while it
waits, and turns a task that did not apply into a skip with its reason. ``environment``,
``kube``, ``docker_client``, ``registry`` and ``registry_auth`` are the run's own, per
session; ``service`` is one service of the environment (tests taking it run once per
service); ``status`` notes a cell of the end-of-run status table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from deploybook.config.model import Environment, Service
from deploybook.plugin.status_table import note_status
from deploybook.plugin.terminal import Terminal
from deploybook.release.context import RunContext
from deploybook.release.pipeline import Skipped

if TYPE_CHECKING:
    from docker import DockerClient

    from deploybook.cluster.connect import KubeClients
    from deploybook.images.credentials import RegistryAuth
    from deploybook.images.registry import RegistryClient
    from deploybook.release.release import Release

__all__ = ["ENGINE", "TERMINAL", "RunView"]

ENGINE = pytest.StashKey["Release"]()
TERMINAL = pytest.StashKey[Terminal]()


class RunView:
    """A test's view of the run: its context, and the outcome of any task of any service."""

    def __init__(self, engine: Release, terminal: Terminal) -> None:
        self.engine = engine
        self.terminal = terminal

    @property
    def context(self) -> RunContext:
        """The run: environment, mode, run id, options, the record it builds on."""
        return self.engine.context

    def wait(self, service: Service | str, task: str) -> Any:
        """The outcome of ``task`` for ``service``; skips the test when the task did not apply."""
        __tracebackhide__ = True
        name = service.name if isinstance(service, Service) else service
        pipeline = self.engine.pipeline
        idle = (lambda: self.terminal.drain(pipeline.events)) if pipeline is not None else None
        outcome = self.engine.wait(name, task, idle=idle)
        if isinstance(outcome, Skipped):
            pytest.skip(outcome.reason)
        return outcome

    @property
    def manifest_source(self) -> dict[str, Any]:
        """Where this run's manifests came from (kind, path or url and ref, commit)."""
        checkout = self.engine.checkout
        return dict(checkout.info) if checkout is not None else {}

    def say(self, service: Service | str, text: str) -> None:
        """A live line of a team's own check."""
        name = service.name if isinstance(service, Service) else service
        self.terminal.progress(name, "check", text)

    @property
    def released(self) -> tuple[str, str]:
        """(when, commit) of the release checked: this run, or the recorded one."""
        ctx = self.context
        if ctx.mode == "runbook" and not ctx.options.dry_run:
            return f"{ctx.started} (this run)", ctx.git.commit[:12] if ctx.git else ""
        record = ctx.source_record
        if record is None:
            return "", ""
        git = record.git or {}
        return record.finished or "", str(git.get("commit") or git.get("sha") or "")[:12]

    def source_commit(self, service: Service | str) -> str:
        """The commit the service's code is from: as this run built it, else as the record says."""
        name = service.name if isinstance(service, Service) else service
        ctx = self.context
        if ctx.mode == "runbook" and not ctx.options.dry_run:
            return self.engine.source_commit(name)
        recorded = ctx.recorded(name)
        source = recorded.source if recorded is not None else {}
        return str(source.get("commit") or self.released[1])


def _engine(request: pytest.FixtureRequest) -> Release:
    engine = request.config.stash.get(ENGINE, None)
    if engine is None:
        pytest.fail("no release: run runbook/ or checks/ with --env NAME", pytrace=False)
    return engine


@pytest.fixture(scope="session")
def release(request: pytest.FixtureRequest) -> RunView:
    """The run: ``release.wait(service, task)`` gives a task's outcome (see RunView)."""
    return RunView(_engine(request), request.config.stash[TERMINAL])


@pytest.fixture(scope="session")
def environment(release: RunView) -> Environment:
    """The loaded, validated environment named by ``--env``."""
    return release.context.env


@pytest.fixture(scope="session")
def kube(release: RunView) -> KubeClients:
    """API clients for the environment's cluster (or the ``--kube-context`` given)."""
    return release.engine.clients.kube


@pytest.fixture(scope="session")
def docker_client(release: RunView) -> DockerClient:
    """The Docker engine from ``DOCKER_HOST`` (as the docker CLI finds it), checked to answer."""
    return release.engine.clients.docker


@pytest.fixture(scope="session")
def registry_auth(release: RunView) -> RegistryAuth | None:
    """Credentials for the environment's registry, from the reference in the environment file."""
    return release.engine.clients.registry_auth


@pytest.fixture(scope="session")
def registry(release: RunView) -> RegistryClient:
    """The registry's v2 API with the environment's credentials and CA."""
    return release.engine.clients.registry


@pytest.fixture
def service(request: pytest.FixtureRequest) -> Service:
    """One service of the environment; a test taking it runs once per service."""
    if not hasattr(request, "param"):
        pytest.fail("'service' is parametrized from --env NAME; run runbook/ or checks/ with --env", pytrace=False)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def status(request: pytest.FixtureRequest, service: Service) -> Callable[..., None]:
    """``status(column=value, ...)`` fills this service's row of the end-of-run status table."""

    def note(**cells: str) -> None:
        note_status(request.node, service.name, **cells)

    return note
