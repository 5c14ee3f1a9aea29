"""Endpoints: every Service in front of a service's pods has ready endpoints and answers.

The Services are those whose selector matches the pod labels of the service's workloads.
HTTP checks declared in the environment file go through the API server's service proxy
(needs `get services/proxy`); a context without that permission skips them with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.check_reports import EndpointsReport

pytestmark = pytest.mark.check("endpoints")


def test_service_endpoints_ready_and_answering(service: Service, release: RunView, status: Callable[..., None]) -> None:
    """Ready endpoints on each Service, then every declared HTTP check."""
    report: EndpointsReport = release.wait(service, "endpoints")
    for endpoints in report.endpoints:
        allure.attach(
            json.dumps(endpoints.__dict__, indent=2), f"endpoints of {endpoints.service}", allure.attachment_type.JSON
        )
    for answer in report.http:
        allure.attach(
            f"GET {answer.url}\n{answer.status} in {answer.latency_ms} ms\n\n{answer.body}",
            f"GET {answer.url.rsplit('/proxy', 1)[-1] or '/'}",
            allure.attachment_type.TEXT,
        )
    verdicts = "; ".join(f"{e.service}: {e.verdict}" for e in report.endpoints)
    http = "HTTP n/a" if report.forbidden else "HTTP failed" if report.problems else "HTTP ok" if report.http else ""
    status(endpoints=", ".join(p for p in (verdicts, http) if p))
    if report.forbidden:
        pytest.skip(report.forbidden)
    assert not report.problems, "\n".join(report.problems)
