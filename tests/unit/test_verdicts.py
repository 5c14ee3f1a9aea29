"""Every kind a release may hold gets a verdict: the one chooser, CronJobs, custom resources."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import ForbiddenError

from deploybook.errors import RolloutFailed
from deploybook.verify import resources
from deploybook.verify.resources import is_custom, is_polled, wait_for_resource
from deploybook.verify.rollout import rolled_out_in
from deploybook.verify.verdicts import judge
from deploybook.verify.workload_status import bare_pod_failure
from deploybook.verify.workloads import workloads_in

CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "nightly", "generation": 1},
    "spec": {
        "schedule": "0 3 * * *",
        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "r/shop/nightly"}]}}}},
    },
    "status": {},
}


def widget(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "shop.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "generation": 2},
        "status": status,
    }


def test_a_cronjob_is_rolled_out_once_stored_without_waiting_for_a_run() -> None:
    verdict = judge("CronJob", CRONJOB)
    assert verdict.done and "schedule '0 3 * * *' stored, not scheduled yet" in verdict.message
    listed = rolled_out_in("CronJob", "shop", CRONJOB, timeout_s=60)
    assert listed is not None and listed.name == "nightly"


def test_a_cronjob_is_a_workload_of_its_image_that_owns_no_pods() -> None:
    (workload,) = workloads_in([CRONJOB])
    assert workload.title == "CronJob/nightly" and workload.images == ("r/shop/nightly",)
    assert workload.desired == 0
    assert workload.pods([{"metadata": {"name": "any", "labels": {"app": "x"}}}]) == []


def test_a_statefulset_partition_needs_only_the_ordinals_at_and_above_it() -> None:
    sts = {
        "metadata": {"name": "db", "generation": 2},
        "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}},
        "status": {"observedGeneration": 2, "readyReplicas": 3, "replicas": 3, "updatedReplicas": 1},
    }
    verdict = judge("StatefulSet", sts)
    assert verdict.done and "db-2..db-2" in verdict.message and "2 held by partition 2" in verdict.message
    sts["status"]["updatedReplicas"] = 0
    assert not judge("StatefulSet", sts).done


@pytest.mark.parametrize(
    ("status", "done", "cause"),
    [
        ({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}, False, None),
        ({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}, True, None),
        ({"observedGeneration": 2, "conditions": [{"type": "Reconciling", "status": "True"}]}, False, None),
        (
            {"conditions": [{"type": "Stalled", "status": "True", "reason": "BadSpec", "message": "no"}]},
            False,
            "BadSpec",
        ),
    ],
)
def test_any_other_kind_is_judged_by_the_kstatus_generic_rules(
    status: dict[str, Any], done: bool, cause: str | None
) -> None:
    verdict = judge("Widget", widget(**status))
    assert (verdict.done, verdict.cause) == (done, cause)


def test_custom_resources_are_told_from_kubernetes_own_groups() -> None:
    assert is_custom("shop.example.com/v1")
    assert not any(map(is_custom, ("v1", "apps/v1", "batch/v1", "networking.k8s.io/v1", "policy/v1")))


class FakeInstance:
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj

    def to_dict(self) -> dict[str, Any]:
        return self.obj


class FakeDynamic:
    """The dynamic client's seam: resources.get(...).get(name=, namespace=) answers in turn."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self.answers, self.resources = answers, self

    def get(self, **kw: Any) -> Any:
        if "api_version" in kw:
            return self
        return FakeInstance(self.answers.pop(0) if len(self.answers) > 1 else self.answers[0])


def test_a_custom_resource_is_waited_for_until_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "POLL_S", 0.01)
    ready = widget(observedGeneration=2, conditions=[{"type": "Ready", "status": "True"}])
    kube = type("Kube", (), {"dynamic": FakeDynamic([widget(observedGeneration=1), ready])})()
    seen: list[str] = []
    result = wait_for_resource(kube, "shop.example.com/v1", "Widget", "shop", "w", timeout_s=5, on_progress=seen.append)
    assert result.kind == "Widget" and seen[-1] == "Resource is Ready"
    assert "generation is 2, but latest observed generation is 1" in seen[0]


def test_a_stalled_custom_resource_fails_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    stalled = widget(conditions=[{"type": "Stalled", "status": "True", "reason": "BadSpec", "message": "size < 0"}])
    kube = type("Kube", (), {"dynamic": FakeDynamic([stalled])})()
    with pytest.raises(RolloutFailed) as info:
        wait_for_resource(kube, "shop.example.com/v1", "Widget", "shop", "w", timeout_s=5)
    assert info.value.cause == "BadSpec" and "size < 0" in str(info.value)


class RefusingDynamic(FakeDynamic):
    """A context that may not get the kind (the view role, for a CRD not aggregated to it)."""

    def get(self, **kw: Any) -> Any:
        if "api_version" in kw:
            return self
        refusal = ApiException(status=403, reason="Forbidden")
        refusal.body = json.dumps({"kind": "Status", "message": 'widgets.shop.example.com "w" is forbidden: no get'})
        raise ForbiddenError(refusal)


def test_an_object_the_context_may_not_get_fails_at_once_naming_the_context() -> None:
    kube = type("Kube", (), {"dynamic": RefusingDynamic([]), "context": "deploybook-view"})()
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as info:
        wait_for_resource(kube, "shop.example.com/v1", "Widget", "shop", "w", timeout_s=60)
    assert time.monotonic() - started < 1, "waiting changes no permission"
    assert info.value.cause == "Forbidden"
    refusal = 'widgets.shop.example.com "w" is forbidden: no get'
    assert info.value.detail == f"context deploybook-view may not get Widget w: {refusal} (HTTP 403)"


def test_a_job_written_without_a_selector_owns_the_pods_its_controller_labels() -> None:
    job = {"kind": "Job", "metadata": {"name": "migrate"}, "spec": {"template": {"spec": {"containers": []}}}}
    (workload,) = workloads_in([job])
    mine = {"metadata": {"name": "migrate-x", "labels": {"job-name": "migrate"}}}
    other = {"metadata": {"name": "other-x", "labels": {"job-name": "other"}}}
    assert workload.pods([mine, other]) == [mine]
    assert workload.selector == "job-name=migrate"


# --------------------------------------------------------------------------- bare Pods


def bare_pod(policy: str, phase: str, *statuses: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "oneshot"},
        "spec": {"restartPolicy": policy, "containers": [{"name": "task", "image": "r/shop/task@sha256:" + "a" * 64}]},
        "status": {"phase": phase, "containerStatuses": list(statuses), **status},
    }


def exited(code: int, restarts: int = 0) -> dict[str, Any]:
    terminated = {"exitCode": code, "reason": "Error" if code else "Completed"}
    return {"name": "task", "restartCount": restarts, "ready": False, "state": {"terminated": terminated}}


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


CRASHED = "pod oneshot container task: exited with code 3 (Error), restarts {n} (timeouts.crashes_allowed: {n})"
BAD_IMAGE = {"name": "task", "state": {"waiting": {"reason": "InvalidImageName"}}}


@pytest.mark.parametrize(
    ("pod", "crashes_allowed", "found"),
    [
        (
            bare_pod("Never", "Failed", exited(3)),
            0,
            ("PodFailed", "pod oneshot Failed: container task exited with code 3 (Error)"),
        ),
        (
            bare_pod("Never", "Failed", reason="Evicted", message="low on memory"),
            0,
            ("PodFailed", "pod oneshot Failed: Evicted: low on memory"),
        ),
        (bare_pod("Never", "Succeeded", exited(0)), 0, None),
        (bare_pod("Always", "Running", exited(3)), 0, ("CrashLoopBackOff", CRASHED.format(n=0))),
        (bare_pod("Always", "Running", exited(3)), 1, None),
        (bare_pod("OnFailure", "Running", exited(3, restarts=1)), 1, ("CrashLoopBackOff", CRASHED.format(n=1))),
        (
            bare_pod("Never", "Pending", BAD_IMAGE),
            0,
            ("ImagePullBackOff", "pod oneshot container task: InvalidImageName"),
        ),
    ],
    ids=["never-exit-3", "evicted", "succeeded", "always-exit-3", "allowed-exit", "on-failure-2nd-exit", "bad-image"],
)
def test_a_bare_pod_fails_by_its_own_restart_policy(
    pod: dict[str, Any], crashes_allowed: int, found: tuple[str, str] | None
) -> None:
    assert bare_pod_failure(pod, now=NOW, crashes_allowed=crashes_allowed) == found


class FakeCore:
    """The reads evidence makes: the namespace's events and a container's log tail."""

    def list_namespaced_event(self, namespace: str, **kw: Any) -> Any:
        return type("Answer", (), {"data": b'{"items": [], "metadata": {}}'})()

    def read_namespaced_pod_log(self, *args: Any, **kw: Any) -> str:
        return "migration 7 failed: table exists\n"


def test_a_bare_pod_is_waited_for_until_ready_and_fails_with_its_exit_and_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources, "POLL_S", 0.01)
    ready = bare_pod("Always", "Running", conditions=[{"type": "Ready", "status": "True"}])
    kube = type("Kube", (), {"dynamic": FakeDynamic([bare_pod("Always", "Pending"), ready]), "core": FakeCore()})()
    assert wait_for_resource(kube, "v1", "Pod", "shop", "oneshot", timeout_s=5).timeline[-1][1] == "Pod is Ready"

    kube.dynamic = FakeDynamic([bare_pod("Never", "Running"), bare_pod("Never", "Failed", exited(7))])
    with pytest.raises(RolloutFailed) as info:
        wait_for_resource(kube, "v1", "Pod", "shop", "oneshot", timeout_s=5)
    assert info.value.cause == "PodFailed" and "container task exited with code 7" in info.value.detail
    assert "migration 7 failed: table exists" in info.value.evidence


def test_bare_pods_and_custom_resources_are_polled_other_builtin_kinds_are_not() -> None:
    assert is_polled("v1", "Pod") and is_polled("shop.example.com/v1", "Widget")
    assert not any(is_polled("v1", kind) for kind in ("Service", "ConfigMap", "PersistentVolumeClaim"))
    assert not is_polled("apps/v1", "Deployment")


@pytest.mark.parametrize("mode", ["checks", "runbook"])
def test_checks_alone_note_a_resource_the_read_only_context_may_not_get_and_a_release_fails_it(mode: str) -> None:
    from types import SimpleNamespace

    from deploybook.manifests.apply import AppliedObject
    from deploybook.release.checking import rollout

    kube = type("Kube", (), {"dynamic": RefusingDynamic([]), "context": "deploybook-view"})()
    env = SimpleNamespace(
        cluster=SimpleNamespace(namespace="shop"), timeouts=SimpleNamespace(rollout=60, crashes_allowed=0)
    )
    release = SimpleNamespace(
        workloads=lambda service: [],
        applied_objects=lambda name: (AppliedObject("Widget", "shop", "w", "recorded", False, api_version="x.io/v1"),),
        context=SimpleNamespace(mode=mode, env=env),
        clients=SimpleNamespace(kube=kube),
    )
    said: list[str] = []
    report = rollout(release, SimpleNamespace(name="web", image="shop/web"), said.append)  # type: ignore[arg-type]
    if mode == "checks":
        assert report.failures == () and report.not_judged == (  # type: ignore[union-attr]
            'Widget/w: context deploybook-view may not get Widget w: widgets.shop.example.com "w" is forbidden: '
            "no get (HTTP 403)",
        )
        assert said == [f"{report.not_judged[0].replace(': context', ': not judged: context', 1)}"]  # type: ignore[union-attr]
    else:
        [failure] = report.failures  # type: ignore[union-attr]
        assert failure.cause == "Forbidden" and report.not_judged == ()  # type: ignore[union-attr]
