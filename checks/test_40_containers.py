"""Inside the containers: the service process runs as non-root and listens on its port.

Those are the policies ``non_root`` and ``port_listening``: enforced unless the environment
file relaxes them (for every service or one) with a reason, which is shown here.

Uses pytest-testinfra's kubectl backend (`kubectl exec`, see deploybook.verify.containers).
Exec needs `create` on `pods/exec`, which the read-only `view` role does not grant: under
such a context the check is skipped with that reason rather than failed. Containers with the
same image digest and the same specs show the same facts, so one exec answers for all of them.
A service whose workloads are all Jobs is judged by its pods' exit codes instead of by exec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.check_reports import ContainersReport

pytestmark = pytest.mark.check("containers")


def test_runs_as_non_root_and_listens(service: Service, release: RunView) -> None:
    """In one ready container per service: uid is not 0, and the declared port is listening.

    A service of Jobs only: every pod exited 0 (a finished pod has nothing to look into).
    """
    report: ContainersReport = release.wait(service, "containers")
    if report.exits:  # a service of Jobs: its finished pods are judged by their exit codes
        allure.attach("\n".join(report.exits), "how the Job's pods exited", allure.attachment_type.TEXT)
        assert not report.problems, "\n".join(report.problems)
        return
    facts = report.facts
    if facts is not None:
        allure.attach(
            f"pod {facts.pod} container {facts.container}\nuid: {facts.uid}\n"
            f"listening TCP ports: {sorted(facts.listening)}",
            "inside the container",
            allure.attachment_type.TEXT,
        )
    if report.relaxed:
        allure.attach(
            "\n".join(f"{s.policy}: relaxed ({s.where}): {s.reason}" for s in report.relaxed),
            "policies relaxed",
            allure.attachment_type.TEXT,
        )
    assert not report.problems, "\n".join(report.problems)
    assert facts is not None
