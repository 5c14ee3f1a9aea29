"""Endpoints: every Service in front of a service's pods has ready endpoints and answers.

The Services are those whose selector matches the pod labels of the service's workloads.
HTTP checks declared in the environment file go through the API server's service proxy
(needs `get services/proxy`); a context without that permission skips them with the reason.
"""

from __future__ import annotations

import json
from typing import Any

import allure
import pytest

from deploybook.plugin.status_table import note_status
from deploybook.verify.endpoints import endpoint_report, http_check, service_port_for


def _services_for(snapshot: Any, workloads: list[Any]) -> list[dict[str, Any]]:
    return [
        s
        for s in snapshot.items("Service")
        if (sel := s.get("spec", {}).get("selector"))
        and any(all(w.pod_labels.get(k) == v for k, v in sel.items()) for w in workloads)
    ]


def test_service_endpoints_ready_and_answering(
    request: pytest.FixtureRequest,
    service: Any,
    environment: Any,
    kube: Any,
    snapshot: Any,
    deployed: dict[str, list[Any]],
) -> None:
    """Ready endpoints on each Service, then every declared HTTP check."""
    namespace = environment.cluster.namespace
    k8s_services = _services_for(snapshot, deployed[service.name])
    if not k8s_services and service.port is None:
        pytest.skip(f"{service.name} declares no port and no Service selects its pods")
    assert k8s_services, f"no Service in {namespace} selects the pods of {service.name}"
    problems, verdicts = [], []
    for svc in k8s_services:
        name = svc["metadata"]["name"]
        report = endpoint_report(namespace, name, snapshot.items("EndpointSlice"))
        verdicts.append(f"{name}: {report.verdict}")
        allure.attach(
            json.dumps(report.__dict__, indent=2),
            f"endpoints of {name}",
            allure.attachment_type.JSON,
        )
        if not report.ready:
            problems.append(
                f"Service {namespace}/{name} has no ready endpoints "
                f"({report.verdict}; not ready: {', '.join(report.not_ready) or '-'})"
            )
    # The service proxy addresses a Service port, not the container port it forwards to.
    named = {k: v for wl in deployed[service.name] for k, v in wl.named_ports.items()}
    port = service_port_for(k8s_services[0], service.port, named)
    target = k8s_services[0]["metadata"]["name"]
    for check in service.http:
        result = http_check(
            kube,
            namespace,
            check,
            service=target,
            port=port,
            timeout_s=environment.timeouts.http,
            external_url=getattr(check, "url", None),
        )
        allure.attach(
            f"GET {result.url}\n{result.status} in {result.latency_ms} ms\n\n{result.body}",
            f"GET {check.path}",
            allure.attachment_type.TEXT,
        )
        if result.forbidden:
            note_status(request.node, service.name, endpoints="; ".join(verdicts) + ", HTTP n/a")
            pytest.skip(
                f"context {kube.context} may not get services/proxy (the view role "
                f"lacks it): HTTP check {check.path} of {target} not run"
            )
        problems += [f"GET {check.path} on {target}: {p}" for p in result.problems]
    http = "" if not service.http else (", HTTP ok" if not problems else ", HTTP failed")
    note_status(request.node, service.name, endpoints="; ".join(verdicts) + http)
    assert not problems, "\n".join(problems)
