"""Rollout: every workload of every service has rolled out, or says why not.

Each workload is followed with `kubectl rollout status` semantics, and fails early with the
cause that waiting will not heal: a crash loop, an image that cannot be pulled, a config
error, OOM kills, the progress deadline, a node that stopped. In a checks run, a workload
the namespace list already shows rolled out passes from that list without a watch. On a
failure the workload's conditions, recent events and the log tails of failing containers
are attached, and the service's other checks are skipped with this one's cause. Reads only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.check_reports import RolloutReport

pytestmark = pytest.mark.check("rollout")


def test_workloads_rolled_out(service: Service, release: RunView, status: Callable[..., None]) -> None:
    """Wait for each workload of the service; fail with the cause."""
    report: RolloutReport = release.wait(service, "rollout")
    for result in report.results:
        allure.attach(
            "\n".join(f"{t:7.2f}s {m}" for t, m in result.timeline),
            f"{result.name} timeline (deadline {result.deadline_s:.0f}s from {result.deadline_source})",
            allure.attachment_type.TEXT,
        )
    for failure in report.failures:
        allure.attach(failure.evidence, f"{failure.name} evidence", allure.attachment_type.TEXT)
    if report.not_judged:
        text = "\n".join(report.not_judged)
        allure.attach(text, "not judged (the context may not read them)", allure.attachment_type.TEXT)
    status(replicas=",".join(f"{r.ready}/{r.desired}" for r in report.results) or "0")
    assert not report.failures, "\n".join(failure.one_line() for failure in report.failures)
