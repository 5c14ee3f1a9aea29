"""A team's own rules: every workload of a service, once rolled out, through its hooks.

A team adds rules by implementing ``pytest_deploybook_check_workload`` in its ``conftest.py`` (see
deploybook.plugin.hookspecs): each problem it returns fails this check for that service.
Without an implementation the check is skipped, saying so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.check_reports import RulesReport

pytestmark = pytest.mark.check("rules")


def test_workloads_pass_the_teams_rules(service: Service, release: RunView) -> None:
    """Every problem a pytest_deploybook_check_workload hook returns, for each workload of the service."""
    report: RulesReport = release.wait(service, "rules")
    allure.attach("\n".join(report.problems) or "no problem", "the team's rules", allure.attachment_type.TEXT)
    assert not report.problems, "\n".join(report.problems)
