"""Rollout: every workload of every service has rolled out, or says why not.

Each service's workloads are watched with `kubectl rollout status` semantics and the early
failure causes of `deploybook.rollout` (crash loop, image pull, config error, OOM, progress
deadline). On failure the workload's conditions, recent events and the log tails of failing
containers are attached. Reads only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import allure
import pytest

from deploybook.rollout import RolloutFailed, wait_for_rollout
from deploybook.status import note_status


def test_workloads_rolled_out(
    request: pytest.FixtureRequest,
    service: Any,
    environment: Any,
    kube: Any,
    deployed: dict[str, list[Any]],
    announce: Callable[[str], None],
) -> None:
    """Wait for each workload running this service's image; fail with the cause."""
    workloads = deployed[service.name]
    assert workloads, (
        f"no Deployment/StatefulSet/DaemonSet/Job in namespace "
        f"{environment.cluster.namespace} runs image {service.image}"
    )
    failures, ready = [], []
    for wl in workloads:

        def progress(message: str, wl: Any = wl) -> None:
            announce(f"  {service.name:<11} rollout | {wl.kind}/{wl.name}: {message}")

        with allure.step(f"rollout of {wl.kind} {wl.name}"):
            try:
                result = wait_for_rollout(
                    kube,
                    wl.kind,
                    environment.cluster.namespace,
                    wl.name,
                    timeout_s=environment.timeouts.rollout,
                    on_progress=progress,
                )
            except RolloutFailed as exc:
                allure.attach(
                    exc.evidence.as_text(),
                    f"{wl.name} evidence",
                    allure.attachment_type.TEXT,
                )
                failures.append(str(exc))
                continue
            allure.attach(
                "\n".join(f"{t:7.2f}s {m}" for t, m in result.timeline),
                f"{wl.name} timeline (deadline {result.deadline_s:.0f}s from {result.deadline_source})",
                allure.attachment_type.TEXT,
            )
            ready.append(f"{result.ready}/{result.desired}")
    note_status(request.node, service.name, replicas=",".join(ready) or "0")
    assert not failures, "\n".join(failures)
