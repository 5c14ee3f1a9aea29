"""wait_for_rollout against fake API responses at the HTTP transport seam.

The real kubernetes `Watch` parses the fake responses, so resume and 410 handling are the
library's and ours together; only the bytes on the wire are made up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from urllib3.exceptions import ProtocolError

from deploybook.errors import RolloutFailed
from deploybook.verify.rollout import RolloutWatcher, wait_for_rollout
from deploybook.verify.tracker import RolloutTracker
from deploybook.verify.verdicts import judge
from deploybook.verify.workload_status import evaluate_workload, pod_failure, pods_of_current_revision, pull_is_retried


class FakeResponse:
    """What urllib3 hands the client with _preload_content=False."""

    status = 200

    def __init__(self, body: bytes = b"", lines: list[Any] | None = None) -> None:
        self.data, self.lines = body, lines or []

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        for line in self.lines:
            if isinstance(line, Exception):
                raise line
            yield (json.dumps(line) + "\n").encode()

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class FakeEndpoint:
    """One list endpoint: a list answer and a script of watch sessions, calls recorded."""

    def __init__(
        self,
        items: list[dict[str, Any]],
        rv: str | list[str] = "1",
        sessions: list[list[Any]] | None = None,
    ) -> None:
        self.items, self.sessions = items, list(sessions or [])
        self.rvs = [rv] if isinstance(rv, str) else list(rv)  # one per list call
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, namespace: str, **kw: Any) -> FakeResponse:
        with self.lock:
            self.calls.append(kw)
        if not kw.get("watch"):
            rv = self.rvs.pop(0) if len(self.rvs) > 1 else self.rvs[0]
            return FakeResponse(json.dumps({"items": self.items, "metadata": {"resourceVersion": rv}}).encode())
        if self.sessions:
            return FakeResponse(lines=self.sessions.pop(0))
        time.sleep(0.05)  # an idle watch window
        return FakeResponse()


class FakeKube:
    def __init__(
        self,
        deployments: FakeEndpoint,
        pods: FakeEndpoint,
        replica_sets: list[dict[str, Any]] | None = None,
    ) -> None:
        self.apps = type("Apps", (), {})()
        self.core = type("Core", (), {})()
        self.apps.list_namespaced_deployment = deployments
        self.apps.list_namespaced_replica_set = FakeEndpoint(replica_sets or [])
        self.core.list_namespaced_pod = pods
        self.core.list_namespaced_event = FakeEndpoint(
            [
                {
                    "type": "Warning",
                    "reason": "BackOff",
                    "message": "Back-off restarting",
                    "involvedObject": {"kind": "Pod", "name": "web-abc-1"},
                    "lastTimestamp": "2025-01-01T00:00:00Z",
                    "count": 3,
                }
            ]
        )
        self.logs: list[tuple[str, str, bool]] = []

        def read_log(name: str, ns: str, *, container: str, tail_lines: int, previous: bool) -> str:
            self.logs.append((name, container, previous))
            return "panic: config missing\n"

        self.core.read_namespaced_pod_log = read_log


def deployment(
    rv: str,
    *,
    generation: int = 2,
    observed: int = 2,
    updated: int = 0,
    available: int = 0,
    total: int = 0,
    replicas: int = 2,
    pds: int | None = None,
    conditions: list[Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
    }
    if pds is not None:
        spec["progressDeadlineSeconds"] = pds
    return {
        "metadata": {
            "name": "web",
            "uid": "u1",
            "generation": generation,
            "resourceVersion": rv,
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        },
        "spec": spec,
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "replicas": total,
            "conditions": conditions or [],
        },
    }


def pod(
    name: str,
    rv: str,
    *,
    state: dict[str, Any] | None = None,
    restarts: int = 0,
    last: dict[str, Any] | None = None,
    hash_: str = "new",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "resourceVersion": rv,
            "labels": {"app": "web", "pod-template-hash": hash_},
            "ownerReferences": [{"name": f"web-{hash_}"}],
        },
        "status": {
            "containerStatuses": [
                {
                    "name": "app",
                    "ready": False,
                    "restartCount": restarts,
                    "state": state or {"running": {}},
                    "lastState": last or {},
                }
            ]
        },
    }


REPLICA_SETS = [
    {
        "metadata": {
            "name": "web-new",
            "ownerReferences": [{"uid": "u1"}],
            "annotations": {"deployment.kubernetes.io/revision": "2"},
            "labels": {"pod-template-hash": "new"},
        }
    }
]


def test_deployment_rollout_completes_from_watch_events_and_reports_progress() -> None:
    start = deployment("10", observed=1)
    deps = FakeEndpoint(
        [start],
        "10",
        [
            [
                {
                    "type": "MODIFIED",
                    "object": deployment("11", updated=1, total=2, available=1),
                },
                {
                    "type": "MODIFIED",
                    "object": deployment("12", updated=2, total=3, available=2),
                },
                {
                    "type": "MODIFIED",
                    "object": deployment("13", updated=2, total=2, available=2),
                },
            ]
        ],
    )
    seen: list[str] = []
    result = wait_for_rollout(
        FakeKube(deps, FakeEndpoint([])),
        "Deployment",
        "ns",
        "web",
        timeout_s=5,
        on_progress=seen.append,
    )
    assert (result.ready, result.desired, result.deadline_source) == (2, 2, "timeout")
    assert seen == [
        "waiting for the spec update to be observed",
        "1 of 2 new replicas updated",
        "1 old replicas pending termination",
        "2 of 2 replicas available",
    ]
    watch_calls = [c for c in deps.calls if c.get("watch")]
    assert watch_calls[0]["resource_version"] == "10"
    assert "field_selector" not in deps.calls[0]  # one stream for every Deployment of the namespace


def test_crash_of_current_pod_fails_early_with_evidence_and_log_tail() -> None:
    crashed = pod(
        "web-abc-1",
        "21",
        restarts=1,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last={"terminated": {"exitCode": 2, "reason": "Error"}},
    )
    old_crashing = pod("web-old-1", "20", restarts=5, hash_="old", last={"terminated": {"exitCode": 1}})
    pods = FakeEndpoint([old_crashing], "20", [[{"type": "ADDED", "object": crashed}]])
    kube = FakeKube(FakeEndpoint([deployment("10", updated=1, total=2)]), pods, REPLICA_SETS)
    t0 = time.monotonic()
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(kube, "Deployment", "ns", "web", timeout_s=20)
    err = info.value
    assert time.monotonic() - t0 < 3
    assert err.cause == "CrashLoopBackOff"
    assert "web-abc-1" in err.detail and "exited with code 2" in err.detail
    assert "web-old-1" not in err.detail  # old revision pods may fail while they go
    text = err.evidence
    assert "panic: config missing" in text and "BackOff" in text
    assert ("web-abc-1", "app", True) in kube.logs


def test_dropped_watch_resumes_from_last_resource_version_and_410_lists_again() -> None:
    deps = FakeEndpoint(
        [deployment("10", updated=1, total=2)],
        ["10", "30"],
        [
            [
                {"type": "MODIFIED", "object": deployment("11", updated=2, total=2)},
                ProtocolError("connection reset"),
            ],
            [
                {
                    "type": "ERROR",
                    "object": {"code": 410, "reason": "Expired", "message": "too old"},
                }
            ],
            [
                {
                    "type": "MODIFIED",
                    "object": deployment("31", updated=2, total=2, available=2),
                }
            ],
        ],
    )
    result = wait_for_rollout(FakeKube(deps, FakeEndpoint([])), "Deployment", "ns", "web", timeout_s=10)
    assert result.ready == 2
    watches = [c["resource_version"] for c in deps.calls if c.get("watch")]
    lists = [c for c in deps.calls if not c.get("watch")]
    assert watches[:3] == [
        "10",
        "11",
        "30",
    ]  # resumed at 11, re-listed (rv 30) after 410
    assert len(lists) == 2


def test_deadline_is_the_smaller_of_timeout_and_progress_deadline() -> None:
    deps = FakeEndpoint([deployment("10", updated=2, total=2, available=1, pds=1)], "10")
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(FakeKube(deps, FakeEndpoint([])), "Deployment", "ns", "web", timeout_s=30)
    err = info.value
    assert (err.cause, err.deadline_s, err.deadline_source) == (
        "Timeout",
        1.0,
        "progressDeadlineSeconds",
    )
    assert "1 of 2 updated replicas available" in err.detail
    assert 1.0 <= err.elapsed_s < 3


def test_progress_deadline_exceeded_condition_fails_at_once() -> None:
    cond = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": 'ReplicaSet "web-new" has timed out progressing.',
    }
    deps = FakeEndpoint([deployment("10", updated=1, total=2, conditions=[cond])], "10")
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(FakeKube(deps, FakeEndpoint([])), "Deployment", "ns", "web", timeout_s=30)
    assert info.value.cause == "ProgressDeadlineExceeded"
    assert "Progressing=False ProgressDeadlineExceeded" in info.value.evidence


def test_missing_workload_is_not_found() -> None:
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(
            FakeKube(FakeEndpoint([]), FakeEndpoint([])),
            "Deployment",
            "ns",
            "web",
            timeout_s=1,
        )
    assert info.value.cause == "NotFound" and "no Deployment named web" in str(info.value)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="known kinds are Deployment"):
        wait_for_rollout(object(), "Widget", "ns", "x", timeout_s=1)


@pytest.mark.parametrize(
    ("waiting", "cause"),
    [
        ("ImagePullBackOff", "ImagePullBackOff"),
        ("ErrImagePull", "ImagePullBackOff"),
        ("CreateContainerConfigError", "CreateContainerConfigError"),
        ("CrashLoopBackOff", "CrashLoopBackOff"),
    ],
)
def test_waiting_reasons_map_to_causes(waiting: str, cause: str) -> None:
    found = pod_failure(pod("p", "1", state={"waiting": {"reason": waiting, "message": "m"}}))
    assert found is not None and found[0] == cause and "pod p container app" in found[1]


def test_first_crash_counts_but_a_single_oom_kill_does_not() -> None:
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    assert pod_failure(pod("p", "1", restarts=1, last=oom)) is None
    twice = pod_failure(pod("p", "1", restarts=2, last=oom))
    assert twice is not None and twice[0] == "OOMKilled"
    crash = pod_failure(pod("p", "1", restarts=1, last={"terminated": {"exitCode": 3}}))
    assert crash is not None and crash[0] == "CrashLoopBackOff"
    assert pod_failure(pod("p", "1", restarts=1, last={"terminated": {"exitCode": 0}})) is None
    assert pod_failure(pod("p", "1")) is None
    job_pod = pod("p", "1", restarts=1, last={"terminated": {"exitCode": 3}})
    assert pod_failure(job_pod, judge_crashes=False) is None


def test_crashes_allowed_forgives_that_many_exits_per_container() -> None:
    """timeouts.crashes_allowed: 1 lets a container exit once (a dependency not up yet) and be restarted."""
    once = pod("p", "1", restarts=1, last={"terminated": {"exitCode": 1}})
    assert pod_failure(once, crashes_allowed=1) is None
    backing_off = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert pod_failure(pod("p", "1", state=backing_off, last=once_last()), crashes_allowed=1) is None
    again = pod_failure(pod("p", "1", restarts=1, state=backing_off, last=once_last()), crashes_allowed=1)
    assert again is not None and again[0] == "CrashLoopBackOff"  # restarted once, exited again
    assert pod_failure(pod("p", "1", state={"terminated": {"exitCode": 1}}), crashes_allowed=1) is None
    twice = pod_failure(pod("p", "1", restarts=2, last={"terminated": {"exitCode": 1}}), crashes_allowed=1)
    assert twice is not None and twice[0] == "CrashLoopBackOff" and "timeouts.crashes_allowed: 1" in twice[1]
    showing = pod("p", "1", restarts=1, state={"terminated": {"exitCode": 1}}, last=once_last())
    assert pod_failure(showing, crashes_allowed=1) is not None  # the second exit, not yet restarted
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    assert pod_failure(pod("p", "1", restarts=2, last=oom), crashes_allowed=2) is None
    thrice = pod_failure(pod("p", "1", restarts=3, last=oom), crashes_allowed=2)
    assert thrice is not None and thrice[0] == "OOMKilled"


def once_last() -> dict[str, Any]:
    return {"terminated": {"exitCode": 1, "reason": "Error"}}


def test_a_pod_being_deleted_is_stopped_not_crashed() -> None:
    killed = pod("p", "1", state={"terminated": {"exitCode": 137, "reason": "Error"}})
    assert pod_failure(killed) is not None  # the same exit on a pod nobody deletes is a crash
    killed["metadata"]["deletionTimestamp"] = "2026-12-03T12:25:00Z"  # Recreate stopping the old pods
    assert pod_failure(killed) is None


def test_statefulset_daemonset_and_job_verdicts() -> None:
    sts = {
        "metadata": {"generation": 3},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 3,
            "readyReplicas": 2,
            "updatedReplicas": 1,
            "currentRevision": "a",
            "updateRevision": "b",
        },
    }
    assert not judge("StatefulSet", sts).done
    sts["status"]["currentRevision"] = "b"
    sts["status"]["updatedReplicas"] = 2
    assert judge("StatefulSet", sts).done
    ds = {
        "metadata": {"generation": 1},
        "status": {
            "observedGeneration": 1,
            "desiredNumberScheduled": 1,
            "updatedNumberScheduled": 1,
            "numberAvailable": 0,
        },
    }
    assert evaluate_workload("DaemonSet", ds).message == "0 of 1 pods available"
    job = {
        "spec": {"completions": 1},
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        },
    }
    verdict = evaluate_workload("Job", job)
    assert verdict.cause == "JobFailed" and "BackoffLimitExceeded" in verdict.message
    job["status"] = {
        "succeeded": 1,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    assert evaluate_workload("Job", job).done


def test_statefulset_pods_filtered_by_update_revision() -> None:
    sts = {"status": {"updateRevision": "web-2"}}
    pods = [
        {"metadata": {"name": n, "labels": {"controller-revision-hash": r}}}
        for n, r in (("a", "web-1"), ("b", "web-2"))
    ]
    kept = pods_of_current_revision("StatefulSet", sts, pods, None)
    assert [p["metadata"]["name"] for p in kept] == ["b"]


def test_a_listed_workload_already_rolled_out_needs_no_watch() -> None:
    """The checks judge complete workloads from one list; only the rest are watched."""
    from deploybook.cluster.watch import NamespaceSnapshot
    from deploybook.verify.rollout import rolled_out_in

    done = deployment("5", replicas=2, updated=2, available=2, total=2)
    rolling = deployment("6", replicas=2, updated=1, available=1, total=2)
    result = rolled_out_in("Deployment", "dx29", done, timeout_s=120)
    assert result is not None and (result.ready, result.desired) == (2, 2)
    assert result.deadline_s == 120 and result.timeline[0][1] == "2 of 2 replicas available"
    assert rolled_out_in("Deployment", "dx29", rolling, timeout_s=120) is None

    calls: list[str] = []

    def lister(namespace: str, **kw: Any) -> FakeResponse:
        calls.append(namespace)
        return FakeResponse(json.dumps({"items": [done, rolling], "metadata": {"resourceVersion": "7"}}).encode())

    snap = NamespaceSnapshot("dx29", {"Deployment": lister})
    for _ in range(100):  # a hundred checks share one list
        assert len(snap.items("Deployment")) == 2
    snap.invalidate()
    snap.items("Deployment")
    assert calls == ["dx29", "dx29"]


def test_selector_matches_labels_and_expressions() -> None:
    from deploybook.cluster.selectors import selector_matches

    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}
    assert selector_matches(sel, {"app": "web", "tier": "a"})
    assert not selector_matches(sel, {"app": "web", "tier": "b"})
    assert not selector_matches(sel, {"app": "api", "tier": "a"})
    assert not selector_matches({}, {"app": "web"})  # an empty selector selects nothing here
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, {"app": "web"})


def test_crashing_pods_of_the_replaced_revision_are_not_judged_before_the_spec_is_observed() -> None:
    """A rollback: the crashing revision is still 'current' until the controller observes the new spec."""
    from deploybook.verify.tracker import RolloutTracker as _Tracker

    stale = deployment("10", generation=3, observed=2, updated=1, total=1)  # revision 2: the crashing one
    crashing = pod(
        "web-new-1",
        "20",
        restarts=1,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last={"terminated": {"exitCode": 3, "reason": "Error"}},
        hash_="new",
    )
    kube = FakeKube(FakeEndpoint([stale]), FakeEndpoint([crashing]), REPLICA_SETS)
    tracker = _Tracker(kube, "Deployment", "ns", "web", 10, None, 0)
    tracker.see_workload(stale)
    tracker.pods = {"web-new-1": crashing}
    assert tracker.judge() is None and tracker.timeline[-1][1] == "waiting for the spec update to be observed"
    tracker.workload = deployment("11", generation=3, observed=3, updated=1, total=2)
    with pytest.raises(RolloutFailed, match="CrashLoopBackOff"):  # once observed, a crash counts again
        tracker.judge()


@pytest.mark.parametrize(
    ("waiting", "retried"),
    [("ErrImagePull", True), ("ImagePullBackOff", True), ("InvalidImageName", False)],
)
def test_only_pulls_the_kubelet_retries_get_a_grace_period(waiting: str, retried: bool) -> None:
    found = pod_failure(pod("p", "1", state={"waiting": {"reason": waiting, "message": "401 Unauthorized"}}))
    assert found is not None and pull_is_retried(*found) is retried


def unhealthy(pod_name: str, uid: str, count: int, message: str) -> dict[str, Any]:
    """An Unhealthy event as the kubelet's recorder aggregates it."""
    return {
        "type": "Warning",
        "reason": "Unhealthy",
        "message": message,
        "involvedObject": {"kind": "Pod", "name": pod_name, "uid": uid, "fieldPath": "spec.containers{app}"},
        "firstTimestamp": "2025-01-01T00:00:00Z",
        "lastTimestamp": "2025-01-01T00:00:20Z",
        "count": count,
    }


def probing_kube(count: int) -> FakeKube:
    """A Deployment waiting on one running pod that is not ready, with ``count`` readiness failures."""
    waiting = pod("web-new-1", "5")
    waiting["metadata"]["uid"] = "p1"
    deps = FakeEndpoint([deployment("10", updated=1, total=1, replicas=1)], "10")
    kube = FakeKube(deps, FakeEndpoint([waiting], "5"), REPLICA_SETS)
    events = [unhealthy("web-new-1", "p1", count, "Readiness probe failed: HTTP probe failed with statuscode: 404")]
    events.append(unhealthy("web-old-1", "p0", 50, "Readiness probe failed: HTTP probe failed with statuscode: 500"))
    kube.core.list_namespaced_event = FakeEndpoint(events)
    return kube


def test_a_readiness_probe_beyond_its_budget_ends_the_rollout_naming_probe_and_status_code() -> None:
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(probing_kube(3), "Deployment", "ns", "web", timeout_s=30, probe_failures_allowed=2)
    assert time.monotonic() - started < 5, "the budget, not the 30 s deadline, ends the wait"
    assert info.value.cause == "ReadinessProbeFailed"
    assert "pod web-new-1 container app: Readiness probe failed 3 times" in info.value.detail
    assert "(status code 404)" in info.value.detail and "more than 2 failures allowed" in info.value.detail
    assert "500" not in info.value.detail, "another pod's events are not this pod's"
    assert "needs a startupProbe" in info.value.detail, "the way out for a slow start is named"


def test_failures_within_the_budget_wait_and_the_timeout_names_the_probe() -> None:
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(probing_kube(2), "Deployment", "ns", "web", timeout_s=1, probe_failures_allowed=2)
    assert info.value.cause == "Timeout"
    assert "Readiness probe failed 2 times, latest: HTTP probe failed with statuscode: 404" in info.value.detail


def test_without_a_budget_probe_failures_are_only_named() -> None:
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(probing_kube(40), "Deployment", "ns", "web", timeout_s=1)
    assert info.value.cause == "Timeout" and "Readiness probe failed 40 times" in info.value.detail


def job_pod(name: str, phase: str, code: int, reason: str) -> dict[str, Any]:
    terminated = {"terminated": {"exitCode": code, "reason": reason}}
    return {
        "metadata": {"name": name},
        "status": {"phase": phase, "containerStatuses": [{"name": "migrate", "state": terminated}]},
    }


def test_a_completed_job_is_judged_by_its_pods_exit_codes() -> None:
    from deploybook.verify.workload_status import job_exits

    lines, problems = job_exits("migrate", [job_pod("migrate-a", "Succeeded", 0, "Completed")], 1)
    assert lines == ["pod migrate-a Succeeded: container migrate exited with code 0 (Completed)"] and problems == []


def test_a_retried_job_that_succeeded_lists_the_failed_attempt_without_a_problem() -> None:
    from deploybook.verify.workload_status import job_exits

    pods = [job_pod("migrate-a", "Failed", 3, "Error"), job_pod("migrate-b", "Succeeded", 0, "Completed")]
    lines, problems = job_exits("migrate", pods, 1)
    assert len(lines) == 2 and problems == []


def test_a_failed_job_names_the_exit_code_and_reason() -> None:
    from deploybook.verify.workload_status import job_exits

    _, problems = job_exits("migrate", [job_pod("migrate-a", "Failed", 3, "Error")], 1)
    assert problems == [
        "Job migrate: 1 pod(s) failed, 0 of 1 succeeded",
        "pod migrate-a Failed: container migrate exited with code 3 (Error)",
    ]


def test_a_job_failed_rollout_carries_its_pods_exit_codes() -> None:
    failed_cond = {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
    }
    job = {
        "metadata": {"name": "migrate", "uid": "j1", "resourceVersion": "3"},
        "spec": {"completions": 1, "selector": {"matchLabels": {"job-name": "migrate"}}},
        "status": {"failed": 1, "conditions": [failed_cond]},
    }
    failed = job_pod("migrate-a", "Failed", 3, "Error")
    failed["metadata"].update(resourceVersion="4", labels={"job-name": "migrate"})
    kube = FakeKube(FakeEndpoint([]), FakeEndpoint([failed], "4"))
    kube.batch = type("Batch", (), {})()
    kube.batch.list_namespaced_job = FakeEndpoint([job], "3")
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(kube, "Job", "ns", "migrate", timeout_s=10)
    assert info.value.cause == "JobFailed"
    assert "BackoffLimitExceeded: Job has reached the specified backoff limit" in info.value.detail
    assert "pod migrate-a Failed: container migrate exited with code 3 (Error)" in info.value.detail


def test_a_pod_the_scheduler_cannot_place_fails_promptly_with_the_schedulers_reason() -> None:
    from datetime import UTC, datetime, timedelta

    since = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    message = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    pending = pod("web-new-1", "5")
    pending["status"] = {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastTransitionTime": since,
            }
        ],
    }
    deps = FakeEndpoint([deployment("10", updated=1, total=1, replicas=1)], "10")
    started = time.monotonic()
    with pytest.raises(RolloutFailed) as info:
        wait_for_rollout(
            FakeKube(deps, FakeEndpoint([pending], "5"), REPLICA_SETS), "Deployment", "ns", "web", timeout_s=30
        )
    assert time.monotonic() - started < 5
    assert info.value.cause == "Unschedulable"
    assert "pod web-new-1 unschedulable for 30 s: 0/1 nodes are available" in info.value.detail


def test_a_job_run_again_is_not_judged_by_the_finished_one_of_its_name() -> None:
    # The apply deleted the finished Job of the release before and created it again: the watch
    # may still hold the old one (Complete) and deliver its deletion after the wait began.
    from deploybook.verify.tracker import RolloutTracker

    def job(uid: str, **status: Any) -> dict[str, Any]:
        meta = {"name": "migrate", "uid": uid, "generation": 1}
        return {"metadata": meta, "spec": {"selector": {"matchLabels": {"job-name": "migrate"}}}, "status": status}

    complete = [{"type": "Complete", "status": "True"}]
    tracker = RolloutTracker(None, "Job", "ns", "migrate", 60, None, 1, uid="new")
    tracker.see_workload(job("old", succeeded=1, conditions=complete))
    assert tracker.judge() is None  # the old one does not pass for the new
    tracker.apply("workload", "DELETED", job("old"))  # not "the workload was deleted while waiting"
    tracker.apply("workload", "ADDED", job("new", active=1))
    assert tracker.workload is not None and tracker.workload["metadata"]["uid"] == "new"
    assert tracker.judge() is None  # running
    tracker.pods = {}
    tracker.apply("workload", "MODIFIED", job("new", succeeded=1, conditions=complete))
    done = tracker.judge()
    assert done is not None and done.name == "migrate"


def test_a_pods_first_event_reaches_a_wait_whose_thread_has_not_read_its_workload_yet() -> None:
    # The dispatcher forwards a pod by the workload's selector. A wait takes its own copy of the
    # workload on its own thread; before it has, the pod's ADDED must still be sent to it: an
    # unschedulable pod sends no later event, and the wait would time out instead of naming it.
    watcher = RolloutWatcher(kube=None, namespace="shop")
    try:
        tracker = RolloutTracker(None, "Deployment", "shop", "web", 60.0, None, 0)
        with watcher._lock:  # the streams of a started watcher, without their threads
            for tag in ("Deployment", "pods"):
                watcher._objects[tag], watcher._listed[tag] = {}, threading.Event()
            watcher._trackers.append(tracker)
        deployment = {
            "metadata": {"name": "web", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "web"}}},
        }
        pod = {"metadata": {"name": "web-1", "labels": {"app": "web"}}, "status": {"phase": "Pending"}}
        watcher._sink.put(("Deployment", "ADDED", deployment))
        watcher._sink.put(("pods", "ADDED", pod))
        got = [tracker.events.get(timeout=5) for _ in range(3)]
        assert tracker.workload is None  # nothing read on the tracker's side
        assert got == [("workload", "ADDED", deployment), ("pods", "LIST", []), ("pods", "ADDED", pod)]
    finally:
        watcher.close()
