"""kstatus rules on API JSON as the list and watch calls return it."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from deploybook.verify.kstatus import (
    DELEGATED_KINDS,
    Status,
    compute,
    cronjob_verdict,
    generic_verdict,
    kind_key,
    statefulset_verdict,
)
from deploybook.verify.verdicts import judge
from deploybook.verify.workload_status import Verdict, evaluate_workload, pod_unschedulable

T0 = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)


def custom_resource(conditions: list[dict[str, Any]] | None = None, **metadata: Any) -> dict[str, Any]:
    """A cert-manager Certificate, a custom resource with the usual condition shape."""
    obj: dict[str, Any] = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "gateway-tls", "namespace": "app-ingress", "generation": 1, **metadata},
        "spec": {"secretName": "gateway-tls", "dnsNames": ["dx29.example"]},
    }
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
    return obj


def condition(ctype: str, status: str, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-03-02T09:59:00Z",
        **extra,
    }


class TestGenericRules:
    def test_a_deletion_timestamp_is_terminating(self) -> None:
        obj = custom_resource(
            [condition("Ready", "True", "Ready")],
            deletionTimestamp="2026-03-02T10:00:00Z",
            finalizers=["cert-manager.io/finalizer"],
        )
        result = compute(obj)
        assert result.status is Status.TERMINATING
        assert "cert-manager.io/finalizer" in result.message
        assert generic_verdict(obj) == Verdict(False, result.message, None, 0, 0)

    def test_an_unobserved_generation_is_in_progress(self) -> None:
        obj = custom_resource([condition("Ready", "True", "Ready")], generation=3)
        obj["status"]["observedGeneration"] = 2
        result = compute(obj)
        assert (result.status, result.reason) == (Status.IN_PROGRESS, "LatestGenerationNotObserved")
        assert result.message == "Certificate generation is 3, but latest observed generation is 2"

    def test_no_observed_generation_skips_the_generation_rule(self) -> None:
        assert compute(custom_resource([condition("Ready", "True", "Ready")], generation=7)).status is Status.CURRENT

    def test_reconciling_true_is_in_progress(self) -> None:
        obj = custom_resource([condition("Reconciling", "True", "Progressing", "applying revision 4")])
        verdict = generic_verdict(obj)
        assert verdict == Verdict(False, "applying revision 4", None)

    def test_stalled_true_is_failed_with_its_reason(self) -> None:
        stalled = condition("Stalled", "True", "BuildFailed", "kustomize build failed: missing resource")
        obj = custom_resource([condition("Ready", "False", "BuildFailed"), stalled])
        verdict = generic_verdict(obj)
        assert verdict == Verdict(False, "kustomize build failed: missing resource", "BuildFailed")
        assert compute(obj).status is Status.FAILED

    def test_the_first_of_reconciling_and_stalled_wins_as_in_kstatus(self) -> None:
        obj = custom_resource([condition("Reconciling", "True", "Retrying"), condition("Stalled", "True", "Oops")])
        assert compute(obj).status is Status.IN_PROGRESS

    def test_reconciling_false_and_stalled_false_say_nothing(self) -> None:
        obj = custom_resource([condition("Reconciling", "False"), condition("Stalled", "False")])
        assert compute(obj).status is Status.CURRENT

    def test_ready_true_is_current(self) -> None:
        verdict = generic_verdict(custom_resource([condition("Ready", "True", "Ready", "Certificate is up to date")]))
        assert verdict == Verdict(True, "Resource is Ready")

    @pytest.mark.parametrize("status", ["False", "Unknown"])
    def test_ready_false_or_unknown_waits_and_never_fails(self, status: str) -> None:
        obj = custom_resource(
            [condition("Ready", status, "DoesNotExist", "Issuing certificate as Secret does not exist")]
        )
        result = compute(obj)
        assert (result.status, result.reason) == (Status.IN_PROGRESS, "DoesNotExist")
        assert result.message == f"Ready={status}: Issuing certificate as Secret does not exist"
        assert result.verdict().cause is None

    def test_no_conditions_at_all_is_current(self) -> None:
        assert generic_verdict(custom_resource()) == Verdict(True, "Resource is current")
        ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}, "status": {}}
        assert generic_verdict(ingress).done

    def test_a_missing_object_is_not_found(self) -> None:
        result = compute(None)
        assert result.status is Status.NOT_FOUND
        assert not result.verdict().done

    @pytest.mark.parametrize(
        ("status", "complaint"),
        [
            ({"conditions": {"type": "Ready"}}, "status.conditions is a dict, not a list"),
            ({"observedGeneration": "1"}, "observedGeneration is '1', not an integer"),
            ("Ready", "status is a str, not a mapping"),
        ],
    )
    def test_a_malformed_status_is_unknown_and_says_what_is_wrong(self, status: Any, complaint: str) -> None:
        obj = custom_resource()
        obj["status"] = status
        result = compute(obj)
        assert result.status is Status.UNKNOWN
        assert result.message == f"cannot read the status of cert-manager.io/Certificate: {complaint}"
        assert not result.verdict().done


class TestDelegatedKinds:
    def deployment(self) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "dx29-gateway-deployment", "generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1},
        }

    def test_deployments_daemonsets_and_jobs_are_refused_without_their_rules(self) -> None:
        assert {"apps/Deployment", "apps/DaemonSet", "batch/Job"} == DELEGATED_KINDS
        with pytest.raises(ValueError, match=r"apps/Deployment is judged by deploybook\.verify\.workload_status"):
            generic_verdict(self.deployment())

    def test_passed_rules_are_used_after_the_generic_ones(self) -> None:
        rules = {"apps/Deployment": partial(evaluate_workload, "Deployment")}
        assert generic_verdict(self.deployment(), rules=rules) == evaluate_workload("Deployment", self.deployment())
        deleting = self.deployment()
        deleting["metadata"]["deletionTimestamp"] = "2026-03-02T10:00:00Z"
        assert compute(deleting, rules=rules).status is Status.TERMINATING

    def test_a_verdict_from_a_passed_rule_maps_to_a_status(self) -> None:
        failed = self.deployment()
        failed["status"]["conditions"] = [
            condition("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "x" has timed out progressing.')
        ]
        result = compute(failed, rules={"apps/Deployment": partial(evaluate_workload, "Deployment")})
        assert (result.status, result.reason) == (Status.FAILED, "ProgressDeadlineExceeded")

    def test_kind_keys_carry_the_group(self) -> None:
        assert kind_key({"apiVersion": "apps/v1", "kind": "StatefulSet"}) == "apps/StatefulSet"
        assert kind_key({"apiVersion": "v1", "kind": "Pod"}) == "Pod"
        kruise = {"apiVersion": "apps.kruise.io/v1beta1", "kind": "StatefulSet", "metadata": {"name": "x"}}
        assert kind_key(kruise) == "apps.kruise.io/StatefulSet"
        assert generic_verdict(kruise).done  # not judged by the apps/StatefulSet rule


def cronjob(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "dx29-cleanup", "namespace": "app-ingress", "generation": 2},
        "spec": {
            "schedule": "*/15 * * * *",
            "concurrencyPolicy": "Forbid",
            "suspend": False,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": []}}}},
            **spec,
        },
        "status": {},
    }


class TestCronJob:
    def test_a_new_cronjob_is_done_once_stored(self) -> None:
        verdict = cronjob_verdict(cronjob())
        assert verdict == Verdict(True, "schedule '*/15 * * * *' stored, not scheduled yet, 0 active Jobs")

    def test_a_running_cronjob_says_when_it_last_ran(self) -> None:
        obj = cronjob()
        obj["status"] = {
            "lastScheduleTime": "2026-03-02T09:45:00Z",
            "lastSuccessfulTime": "2026-03-02T09:45:07Z",
            "active": [{"kind": "Job", "namespace": "app-ingress", "name": "dx29-cleanup-29012345"}],
        }
        verdict = cronjob_verdict(obj)
        assert verdict.done
        assert verdict.message == "schedule '*/15 * * * *' stored, last scheduled 2026-03-02T09:45:00Z, 1 active Jobs"

    def test_a_suspended_cronjob_is_fine(self) -> None:
        verdict = cronjob_verdict(cronjob(suspend=True))
        assert verdict.done
        assert "suspended" in verdict.message

    def test_a_cronjob_being_deleted_is_not_done(self) -> None:
        obj = cronjob()
        obj["metadata"]["deletionTimestamp"] = "2026-03-02T10:00:00Z"
        assert not cronjob_verdict(obj).done

    def test_generic_verdict_routes_cronjobs_here(self) -> None:
        assert generic_verdict(cronjob()) == cronjob_verdict(cronjob())


def statefulset(
    *,
    replicas: int = 3,
    strategy: dict[str, Any] | None = None,
    generation: int = 2,
    **status: Any,
) -> dict[str, Any]:
    """A StatefulSet as the API returns it after the controller has written its status."""
    full_status = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": replicas,
        "currentReplicas": replicas,
        "updatedReplicas": replicas,
        "availableReplicas": replicas,
        "currentRevision": "dx29-db-7c9d8f6b5",
        "updateRevision": "dx29-db-7c9d8f6b5",
        "collisionCount": 0,
        **status,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "dx29-db", "namespace": "app-ingress", "generation": generation},
        "spec": {
            "replicas": replicas,
            "serviceName": "dx29-db",
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "selector": {"matchLabels": {"app": "dx29-db"}},
        },
        "status": full_status,
    }


ON_DELETE = {"type": "OnDelete"}
NEW = "dx29-db-5f4b9c8d7"
OLD = "dx29-db-7c9d8f6b5"


class TestStatefulSetRollingUpdate:
    def test_a_finished_rolling_update_is_done(self) -> None:
        assert statefulset_verdict(statefulset()) == Verdict(True, f"3 of 3 pods ready at revision {OLD}", None, 3, 3)

    def test_a_rolling_update_under_way_waits(self) -> None:
        obj = statefulset(updatedReplicas=1, currentReplicas=2, updateRevision=NEW)
        assert statefulset_verdict(obj) == Verdict(False, f"1 of 3 pods at revision {NEW}", None, 3, 3)

    def test_it_waits_until_the_new_revision_is_current(self) -> None:
        obj = statefulset(updateRevision=NEW)
        assert statefulset_verdict(obj).message == f"waiting for revision {NEW} to become current"

    def test_pods_not_ready_wait(self) -> None:
        assert statefulset_verdict(statefulset(readyReplicas=2)) == Verdict(False, "2 of 3 pods ready", None, 2, 3)

    def test_a_scale_down_waits_for_the_extra_pods(self) -> None:
        obj = statefulset(replicas=2)
        obj["status"]["replicas"] = 3
        assert statefulset_verdict(obj).message == "1 pods pending termination"

    def test_no_observed_generation_yet_waits(self) -> None:
        obj = statefulset()
        del obj["status"]["observedGeneration"]
        assert statefulset_verdict(obj).message == "waiting for the spec to be observed"

    def test_it_is_the_rule_a_rollout_judges_a_statefulset_by(self) -> None:
        cases = [
            statefulset(),
            statefulset(readyReplicas=1),
            statefulset(updatedReplicas=1, updateRevision=NEW),
            statefulset(generation=3, observedGeneration=2),
        ]
        for obj in cases:
            assert statefulset_verdict(obj) == judge("StatefulSet", obj)


class TestStatefulSetOnDelete:
    def test_done_once_observed_and_ready_and_says_how_many_pods_are_old(self) -> None:
        obj = statefulset(strategy=ON_DELETE, generation=3, updatedReplicas=1, currentReplicas=2, updateRevision=NEW)
        verdict = statefulset_verdict(obj)
        assert verdict.done
        assert verdict.message == (
            f"3 of 3 pods ready; OnDelete: 2 pods still run revision {OLD}, delete them to move them to {NEW}"
        )

    def test_every_pod_replaced_by_hand(self) -> None:
        # The controller never moves currentRevision under OnDelete; updatedReplicas tells.
        obj = statefulset(strategy=ON_DELETE, updatedReplicas=3, currentReplicas=0, updateRevision=NEW)
        assert statefulset_verdict(obj).message == f"3 of 3 pods ready; OnDelete: every pod runs revision {NEW}"

    def test_a_rollout_does_not_wait_forever_for_pods_nobody_deletes(self) -> None:
        obj = statefulset(strategy=ON_DELETE, updatedReplicas=0, currentReplicas=3, updateRevision=NEW)
        assert judge("StatefulSet", obj).done
        assert "3 pods still run revision" in judge("StatefulSet", obj).message

    def test_not_ready_waits(self) -> None:
        obj = statefulset(strategy=ON_DELETE, readyReplicas=2)
        assert statefulset_verdict(obj) == Verdict(False, "2 of 3 pods ready", None, 2, 3)

    def test_spec_not_observed_waits(self) -> None:
        obj = statefulset(strategy=ON_DELETE, generation=4, observedGeneration=3)
        verdict = statefulset_verdict(obj)
        assert not verdict.done
        assert "generation is 4, but latest observed generation is 3" in verdict.message


def partitioned(partition: int, replicas: int = 5, **status: Any) -> dict[str, Any]:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition, "maxUnavailable": 1}}
    return statefulset(replicas=replicas, strategy=strategy, updateRevision=NEW, **status)


class TestStatefulSetPartition:
    def test_pods_at_or_above_the_partition_are_waited_for(self) -> None:
        verdict = statefulset_verdict(partitioned(2, updatedReplicas=2, currentReplicas=3))
        assert verdict == Verdict(
            False, f"2 of 3 pods updated to revision {NEW} (partition 2: dx29-db-2..dx29-db-4)", None, 5, 5
        )

    def test_done_when_they_are_updated_while_the_others_keep_the_old_revision(self) -> None:
        verdict = statefulset_verdict(partitioned(2, updatedReplicas=3, currentReplicas=2))
        assert verdict.done
        assert verdict.message == (
            f"partitioned roll out complete: dx29-db-2..dx29-db-4 at revision {NEW}, 2 held by partition 2"
        )

    def test_a_partition_at_or_above_replicas_updates_nothing(self) -> None:
        verdict = statefulset_verdict(partitioned(5, updatedReplicas=0))
        assert verdict.done
        assert verdict.message == f"partitioned roll out complete: no pods at revision {NEW}, 5 held by partition 5"

    def test_pod_names_follow_the_start_ordinal(self) -> None:
        obj = partitioned(1, replicas=3, updatedReplicas=0)
        obj["spec"]["ordinals"] = {"start": 1}
        assert "(partition 1: dx29-db-2..dx29-db-3)" in statefulset_verdict(obj).message


class TestOtherKinds:
    def test_a_pending_pvc_waits_and_a_bound_one_is_current(self) -> None:
        pvc: dict[str, Any] = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"}}
        pvc["status"] = {"phase": "Pending"}
        assert generic_verdict(pvc) == Verdict(False, "PVC is not Bound: phase Pending")
        pvc["status"] = {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}
        assert generic_verdict(pvc).done

    def test_a_load_balancer_service_needs_its_cluster_ip_only(self) -> None:
        svc: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dx29-gateway"}}
        svc["spec"] = {"type": "LoadBalancer", "ports": [{"port": 80}]}
        assert not generic_verdict(svc).done
        svc["spec"]["clusterIP"] = "10.96.0.15"
        svc["status"] = {"loadBalancer": {}}
        assert generic_verdict(svc) == Verdict(True, "Service is ready")
        svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7", "ipMode": "VIP"}]}}
        assert generic_verdict(svc).message == "Service is ready, load balancer at 203.0.113.7"

    def test_a_crd_is_current_when_established_and_failed_when_names_clash(self) -> None:
        crd: dict[str, Any] = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "certificates.cert-manager.io"},
        }
        crd["status"] = {"conditions": [condition("NamesAccepted", "True", "NoConflicts")]}
        assert generic_verdict(crd) == Verdict(False, "Install in progress")
        crd["status"]["conditions"].append(condition("Established", "True", "InitialNamesAccepted"))
        assert generic_verdict(crd).done
        clash = condition("NamesAccepted", "False", "ListKindConflict", '"CertificateList" is already in use')
        crd["status"]["conditions"] = [clash]
        assert generic_verdict(crd) == Verdict(False, '"CertificateList" is already in use', "ListKindConflict")

    @pytest.mark.parametrize("kind", ["ConfigMap", "Secret"])
    def test_configmaps_and_secrets_are_current_once_stored(self, kind: str) -> None:
        obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "settings"}}
        assert generic_verdict(obj) == Verdict(True, f"{kind} is ready once stored")

    def test_a_replicaset_waits_for_available_pods(self) -> None:
        rs: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-6c9d"}}
        rs["spec"] = {"replicas": 2}
        rs["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 1, "fullyLabeledReplicas": 2}
        assert generic_verdict(rs) == Verdict(False, "1 of 2 pods available", None, 2, 2)
        rs["status"]["availableReplicas"] = 2
        assert generic_verdict(rs).done

    def test_a_bare_pod(self) -> None:
        pod = pending_pod()
        assert generic_verdict(pod).message.startswith("not scheduled yet: 0/1 nodes are available")
        pod["status"] = {"phase": "Running", "conditions": [condition("Ready", "True")]}
        assert generic_verdict(pod).done
        pod["status"] = {
            "phase": "Running",
            "conditions": [condition("Ready", "False", "ContainersNotReady")],
            "containerStatuses": [
                {"name": "web", "ready": False, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ],
        }
        assert generic_verdict(pod) == Verdict(False, "containers in CrashLoopBackOff: web", "CrashLoopBackOff")
        pod["status"] = {"phase": "Failed"}
        assert generic_verdict(pod).cause == "PodFailed"
        pod["status"] = {"phase": "Succeeded"}
        assert generic_verdict(pod).done

    @pytest.mark.parametrize("policy", ["Never", "OnFailure"])
    def test_a_bare_pod_that_runs_to_completion_is_done_once_succeeded_not_once_ready(self, policy: str) -> None:
        pod = pending_pod()
        pod["spec"]["restartPolicy"] = policy
        pod["status"] = {"phase": "Running", "conditions": [condition("Ready", "True")]}
        assert generic_verdict(pod) == Verdict(
            False, f"Pod is running; restartPolicy {policy}: done once it has Succeeded", None
        )
        pod["status"] = {"phase": "Succeeded"}
        assert generic_verdict(pod).done


SCHEDULER_MESSAGE = (
    "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: "
    "1 No preemption victims found for incoming pod."
)


def pending_pod() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "dx29-db-0", "namespace": "app-ingress", "creationTimestamp": "2026-03-02T09:59:58Z"},
        "spec": {"containers": [{"name": "db", "resources": {"requests": {"cpu": "64"}}}]},
        "status": {
            "phase": "Pending",
            "qosClass": "Burstable",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "lastProbeTime": None,
                    "lastTransitionTime": "2026-03-02T10:00:00Z",
                    "reason": "Unschedulable",
                    "message": SCHEDULER_MESSAGE,
                }
            ],
        },
    }


class TestPodUnschedulable:
    def test_within_the_grace_period_it_is_no_failure_yet(self) -> None:
        assert pod_unschedulable(pending_pod(), now=T0 + timedelta(seconds=15)) is None

    def test_after_the_grace_period_it_fails_with_the_scheduler_message(self) -> None:
        failure = pod_unschedulable(pending_pod(), now=T0 + timedelta(seconds=16))
        assert failure == ("Unschedulable", f"pod dx29-db-0 unschedulable for 16 s: {SCHEDULER_MESSAGE}")

    def test_the_grace_period_is_the_callers(self) -> None:
        assert pod_unschedulable(pending_pod(), now=T0 + timedelta(seconds=60), grace_s=120) is None

    def test_without_a_transition_time_it_counts_from_creation(self) -> None:
        pod = pending_pod()
        del pod["status"]["conditions"][0]["lastTransitionTime"]
        failure = pod_unschedulable(pod, now=T0 + timedelta(seconds=14))
        assert failure is not None
        assert "unschedulable for 16 s" in failure[1]

    def test_a_pod_preempting_others_for_room_is_no_failure(self) -> None:
        pod = pending_pod()
        pod["status"]["nominatedNodeName"] = "node-1"
        assert pod_unschedulable(pod, now=T0 + timedelta(minutes=5)) is None

    @pytest.mark.parametrize(
        "change",
        [
            {"reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"},
            {"status": "True", "reason": None, "message": None},
        ],
    )
    def test_other_scheduling_states_are_no_failure(self, change: dict[str, Any]) -> None:
        pod = pending_pod()
        pod["status"]["conditions"][0].update(change)
        assert pod_unschedulable(pod, now=T0 + timedelta(minutes=5)) is None

    def test_a_running_or_deleted_pod_is_no_failure(self) -> None:
        running = copy.deepcopy(pending_pod())
        running["status"]["phase"] = "Running"
        deleted = pending_pod()
        deleted["metadata"]["deletionTimestamp"] = "2026-03-02T10:00:05Z"
        for pod in (running, deleted):
            assert pod_unschedulable(pod, now=T0 + timedelta(minutes=5)) is None

    def test_now_must_carry_a_time_zone(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            pod_unschedulable(pending_pod(), now=datetime(2026, 3, 2, 10, 1))
