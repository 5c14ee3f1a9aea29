"""Every kind a release may hold gets a verdict: the one chooser, CronJobs, custom resources."""

from __future__ import annotations

from typing import Any

import pytest

from deploybook.errors import RolloutFailed
from deploybook.verify import resources
from deploybook.verify.resources import is_custom, wait_for_resource
from deploybook.verify.rollout import rolled_out_in
from deploybook.verify.verdicts import judge
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


def test_a_job_written_without_a_selector_owns_the_pods_its_controller_labels() -> None:
    job = {"kind": "Job", "metadata": {"name": "migrate"}, "spec": {"template": {"spec": {"containers": []}}}}
    (workload,) = workloads_in([job])
    mine = {"metadata": {"name": "migrate-x", "labels": {"job-name": "migrate"}}}
    other = {"metadata": {"name": "other-x", "labels": {"job-name": "other"}}}
    assert workload.pods([mine, other]) == [mine]
    assert workload.selector == "job-name=migrate"
