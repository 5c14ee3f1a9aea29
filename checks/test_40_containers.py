"""Inside the containers: the service process runs as non-root and listens on its port.

Uses pytest-testinfra's kubectl backend (`kubectl exec`, see deploybook.verify.containers). Exec
needs `create` on `pods/exec`, which the read-only `view` role does not grant: under such a
context the check is skipped with that reason rather than failed. A pod replaced while it is
looked into (a release rolling at the same time) is not a finding: the next ready pod is tried.

Containers with the same image digest and the same specs show the same facts (see
`deploybook.verify.containers.facts_key`), so one exec answers for all of them: a namespace of a
hundred copies of one image costs one `kubectl exec` pair, not a hundred.
"""

from __future__ import annotations

import time
from typing import Any

import allure
import pytest

from deploybook.verify.containers import ContainerFacts, ExecFailed, ExecForbidden, facts_key, inspect_container
from deploybook.verify.digests import containers_in

ATTEMPTS = 3


def _ready_containers(service: Any, snapshot: Any, workloads: list[Any]) -> list[tuple[Any, Any]]:
    """(pod JSON, RunningContainer) of every ready container of the service's image."""
    found = []
    for wl in workloads:
        for pod in wl.pods(snapshot):
            found += [(pod, c) for c in containers_in([pod], image_repository=service.image) if c.ready]
    return found


def _look_inside(
    service: Any, namespace: str, kube: Any, snapshot: Any, workloads: list[Any], seen: dict[str, Any]
) -> Any:
    errors: list[str] = []
    for attempt in range(ATTEMPTS):
        running = _ready_containers(service, snapshot, workloads)
        assert running, f"no ready container of {service.name} in {namespace} to look into"
        pod, target = running[attempt % len(running)]
        key = facts_key(pod, target.container, target.digest)
        if key is not None and key in seen:
            return seen[key]
        try:
            facts = inspect_container(
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
            snapshot.invalidate("Pod")  # the pod may have been replaced: look again
            time.sleep(2.0)
            continue
        if key is not None:
            seen[key] = facts
        return facts
    pytest.fail("could not look into a container:\n" + "\n".join(errors), pytrace=False)


def test_runs_as_non_root_and_listens(
    service: Any,
    environment: Any,
    kube: Any,
    snapshot: Any,
    container_facts: dict[str, Any],
    deployed: dict[str, list[Any]],
) -> None:
    """In one ready container per service: uid is not 0, and the declared port is listening."""
    workloads = deployed[service.name]
    facts: ContainerFacts = _look_inside(
        service, environment.cluster.namespace, kube, snapshot, workloads, container_facts
    )
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
