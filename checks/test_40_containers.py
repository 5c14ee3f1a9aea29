"""Inside the containers: the service process runs as non-root and listens on its port.

Uses pytest-testinfra's kubectl backend (`kubectl exec`, see deploybook.containers). Exec
needs `create` on `pods/exec`, which the read-only `view` role does not grant: under such a
context the check is skipped with that reason rather than failed. A pod replaced while it is
looked into (a release rolling at the same time) is not a finding: the next ready pod is tried.
"""

from __future__ import annotations

import time
from typing import Any

import allure
import pytest

from deploybook.containers import ExecFailed, ExecForbidden, inspect_container
from deploybook.digests import running_images

ATTEMPTS = 3


def _ready_containers(service: Any, namespace: str, kube: Any, workloads: list[Any]) -> list[Any]:
    return [
        c
        for wl in workloads
        for c in running_images(kube, namespace, wl.selector, image_repository=service.image)
        if c.ready
    ]


def _look_inside(service: Any, namespace: str, kube: Any, workloads: list[Any]) -> Any:
    errors: list[str] = []
    for attempt in range(ATTEMPTS):
        running = _ready_containers(service, namespace, kube, workloads)
        assert running, f"no ready container of {service.name} in {namespace} to look into"
        target = running[attempt % len(running)]
        try:
            return inspect_container(
                target.pod,
                target.container,
                namespace,
                context=kube.context,
                kubeconfig=getattr(kube, "kubeconfig", None) or None,
            )
        except ExecForbidden as exc:
            pytest.skip(
                f"context {kube.context} may not exec into pods (needs create pods/exec; the view role lacks it): {exc}"
            )
        except ExecFailed as exc:
            errors.append(str(exc))
            time.sleep(2.0)
    pytest.fail("could not look into a container:\n" + "\n".join(errors), pytrace=False)


def test_runs_as_non_root_and_listens(
    service: Any, environment: Any, kube: Any, deployed: dict[str, list[Any]]
) -> None:
    """In one ready container per service: uid is not 0, and the declared port is listening."""
    facts = _look_inside(service, environment.cluster.namespace, kube, deployed[service.name])
    where = f"pod {facts.pod} container {facts.container}"
    allure.attach(
        f"{where}\nuid: {facts.uid}\nlistening TCP ports: {sorted(facts.listening)}",
        "inside the container",
        allure.attachment_type.TEXT,
    )
    assert facts.uid != 0, f"{where} runs as root (uid 0); expected a non-root user"
    if service.port is not None:
        assert service.port in facts.listening, (
            f"{where} listens on {sorted(facts.listening) or 'no TCP port'}, not on the declared port {service.port}"
        )
