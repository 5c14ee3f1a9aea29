"""What each post-deploy check found: the outcome types the checks' tests read and show.

``deploybook.release.checking`` makes them; ``checks/test_*.py`` wait for them and assert.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deploybook.config.model import PolicySetting
from deploybook.errors import RolloutFailed
from deploybook.verify.containers import ContainerFacts
from deploybook.verify.digests import DigestMismatch, RunningContainer
from deploybook.verify.endpoints import EndpointReport, HttpResult
from deploybook.verify.rollout import RolloutResult

__all__ = ["ContainersReport", "DigestsReport", "EndpointsReport", "RolloutReport", "RulesReport"]


@dataclass(frozen=True)
class RolloutReport:
    """Every workload of a service, rolled out or failed with its cause."""

    results: tuple[RolloutResult, ...] = ()
    failures: tuple[RolloutFailed, ...] = ()
    not_judged: tuple[str, ...] = ()  # checks alone: objects the read-only context may not get, and why

    @property
    def blocks(self) -> str | None:
        """Why the service's other checks are skipped: its first failed rollout."""
        return self.failures[0].one_line() if self.failures else None


@dataclass(frozen=True)
class EndpointsReport:
    """The Services in front of a service's pods, their endpoints, the HTTP checks' answers."""

    endpoints: tuple[EndpointReport, ...] = ()
    http: tuple[HttpResult, ...] = ()
    problems: tuple[str, ...] = ()
    forbidden: str = ""  # why the HTTP checks could not be sent (the context lacks services/proxy)


@dataclass(frozen=True)
class DigestsReport:
    """What runs against what the release recorded, and what the registry says of it."""

    expected: str | None
    source: str
    running: tuple[RunningContainer, ...] = ()
    mismatches: tuple[DigestMismatch, ...] = ()
    registry_problem: str | None = None
    third_party: tuple[RunningContainer, ...] = ()  # containers of images no service builds
    note: str = ""  # why old pods may still run (a StatefulSet's OnDelete strategy)


@dataclass(frozen=True)
class ContainersReport:
    """What was seen inside one ready container of the service, or how its Job's pods exited;
    ``relaxed``: the runtime policies (non_root, port_listening) this service does not judge."""

    facts: ContainerFacts | None = None
    problems: tuple[str, ...] = field(default=())
    exits: tuple[str, ...] = ()  # a service of Jobs only: each finished pod's containers' exit codes
    relaxed: tuple[PolicySetting, ...] = ()


@dataclass(frozen=True)
class RulesReport:
    """What a team's own rules (the ``pytest_deploybook_check_workload`` hook) found, per workload."""

    problems: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()
