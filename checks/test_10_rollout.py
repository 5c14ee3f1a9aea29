"""Rollout: every workload of every service has rolled out, or says why not.

A workload the namespace snapshot already shows rolled out passes from that one list (a
checks-only run of a healthy namespace makes no watch at all). Any other workload, and every
workload of a release run (whose apply may have come after the snapshot), is watched with
`kubectl rollout status` semantics and the early failure causes of `deploybook.verify.rollout`
(crash loop, image pull, config error, OOM, progress deadline). On failure the workload's
conditions, recent events and the log tails of failing containers are attached. Reads only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import allure
import pytest

from deploybook.plugin.status_table import note_status
from deploybook.verify.rollout import RolloutFailed, RolloutResult, rolled_out_in, wait_for_rollout


def _from_snapshot(release: Any, snapshot: Any, wl: Any, namespace: str, timeout_s: float) -> RolloutResult | None:
    if getattr(release, "mode", "") == "runbook":
        return None  # this run applied just now: only a watch from here on can tell
    obj = next((o for o in snapshot.items(wl.kind) if o["metadata"]["name"] == wl.name), None)
    return None if obj is None else rolled_out_in(wl.kind, namespace, obj, timeout_s=timeout_s)


def test_workloads_rolled_out(
    request: pytest.FixtureRequest,
    service: Any,
    environment: Any,
    kube: Any,
    release: Any,
    snapshot: Any,
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
            namespace, timeout_s = environment.cluster.namespace, environment.timeouts.rollout
            result = _from_snapshot(release, snapshot, wl, namespace, timeout_s)
            waited = result is None
            if result is not None:
                progress(f"{result.timeline[-1][1]} (rolled out in the namespace list)")
            try:
                result = result or wait_for_rollout(
                    kube,
                    wl.kind,
                    namespace,
                    wl.name,
                    timeout_s=timeout_s,
                    on_progress=progress,
                )
            except RolloutFailed as exc:
                snapshot.invalidate()  # pods and endpoints moved on while waiting
                allure.attach(
                    exc.evidence.as_text(),
                    f"{wl.name} evidence",
                    allure.attachment_type.TEXT,
                )
                failures.append(str(exc))
                continue
            if waited:  # the pods and endpoints listed before the wait are stale
                snapshot.invalidate()
            allure.attach(
                "\n".join(f"{t:7.2f}s {m}" for t, m in result.timeline),
                f"{wl.name} timeline (deadline {result.deadline_s:.0f}s from {result.deadline_source})",
                allure.attachment_type.TEXT,
            )
            ready.append(f"{result.ready}/{result.desired}")
    note_status(request.node, service.name, replicas=",".join(ready) or "0")
    assert not failures, "\n".join(failures)
