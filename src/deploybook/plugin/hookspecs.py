"""Hooks a team implements (in its ``conftest.py`` or a plugin) to extend a release.

Added to pytest's hook registry by ``deploybook.plugin.hooks.pytest_addhooks``, the way
pytest-xdist declares its own in ``newhooks.py``. Implementations are called from the
release's worker threads (one per service), so they must not rely on pytest's per-test
state; they may read the cluster with the clients they are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from deploybook.config.model import Environment, Service
    from deploybook.evidence.record import ReleaseRecord
    from deploybook.verify.workloads import Workload


@pytest.hookspec
def pytest_deploybook_check_workload(
    workload: Workload, service: Service, environment: Environment, kube: Any
) -> list[str] | None:
    """Problems a team's own rule finds with ``workload`` once it has rolled out.

    Return a list of problems (each one line, saying what is wrong and where), ``[]`` or
    ``None`` when nothing is wrong. Every implementation is called; the problems of all of
    them fail the service's ``checks/test_50_workload_rules.py`` check. ``kube`` is the
    run's ``KubeClients`` (read only: a check never changes the cluster).
    """


@pytest.hookspec
def pytest_deploybook_check_manifests(
    service: Service, environment: Environment, objects: list[Any]
) -> list[str] | None:
    """A team's own policies on ``service``'s rendered manifests, before anything is applied.

    ``objects`` are the rendered objects (dicts) the release would apply; a release (and a
    ``--dry-run``) calls this in its preflight, once per service. Return the problems (each one
    line, naming the object and what to do; ``[]`` or ``None`` when none): any problem refuses
    the release before anything is built or applied, with the manifest file named. The
    built-in policies as they hold for the service are ``environment.policies_for(service)``.
    """


@pytest.hookspec
def pytest_deploybook_release_finished(record: ReleaseRecord, run_dir: Path) -> None:
    """A release has written its record (``run_dir/release.json``), before the report is made.

    Publish it elsewhere (a deployment tracker, a chat channel, an artifact store). Called
    for every release run, passed or not (``record.outcome`` says which); an exception here
    fails the run with the error, after the record is safely written.
    """
