"""Probe failures from Events shaped as the core/v1 list API returns them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from deploybook.verify.probes import ProbeFailure, budget_exceeded, describe, probe_failures

NS = "app-ingress"
WEB = "dx29-gateway-deployment-6c9d5b7f4-x2k8p"
WEB_UID = "0f6c2b1e-8d4a-4b6e-9a51-3c2d7e9f1a20"
OTHER = "dx29-gateway-deployment-6c9d5b7f4-q7m2z"


def ts(seconds: int) -> str:
    return f"2026-03-02T10:{seconds // 60:02d}:{seconds % 60:02d}Z"


def at(seconds: int) -> datetime:
    return datetime(2026, 3, 2, 10, seconds // 60, seconds % 60, tzinfo=UTC)


def kubelet_event(
    message: str,
    *,
    pod: str = WEB,
    container: str = "gateway",
    count: int = 1,
    first: int = 5,
    last: int | None = None,
    reason: str = "Unhealthy",
    event_type: str = "Warning",
    uid: str = WEB_UID,
) -> dict[str, Any]:
    """An Event as the kubelet's core recorder writes it, aggregated by count."""
    return {
        "metadata": {
            "name": f"{pod}.182a9e3b5c1d7f{count:02d}",
            "namespace": NS,
            "uid": "7d1e4c3a-0b2f-4e9d-8c6a-5f4e3d2c1b0a",
            "resourceVersion": "4711",
            "creationTimestamp": ts(first),
        },
        "involvedObject": {
            "kind": "Pod",
            "namespace": NS,
            "name": pod,
            "uid": uid,
            "apiVersion": "v1",
            "resourceVersion": "4690",
            "fieldPath": f"spec.containers{{{container}}}",
        },
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ts(first),
        "lastTimestamp": ts(last if last is not None else first),
        "count": count,
        "type": event_type,
        "eventTime": None,
        "reportingComponent": "kubelet",
        "reportingInstance": "node-1",
    }


def series_event(message: str, *, count: int, first: int, last: int) -> dict[str, Any]:
    """The same occurrence written by an events.k8s.io recorder, as the core/v1 list shows it."""
    event = kubelet_event(message, first=first)
    event.update(
        {
            "firstTimestamp": None,
            "lastTimestamp": None,
            "count": None,
            "eventTime": ts(first)[:-1] + ".123456Z",
            "series": {"count": count, "lastObservedTime": ts(last)[:-1] + ".654321Z"},
            "action": "Probe",
            "source": {},
        }
    )
    return event


READINESS_404 = "Readiness probe failed: HTTP probe failed with statuscode: 404"
HEALTH_URL = "http://10.244.0.12:8080/health"
LIVENESS_REFUSED = f'Liveness probe failed: Get "{HEALTH_URL}": dial tcp 10.244.0.12:8080: connect: connection refused'
NOISE = [
    kubelet_event("Successfully assigned app-ingress/x to node-1", reason="Scheduled", event_type="Normal"),
    kubelet_event('Container image "localhost:5000/dx29/gateway@sha256:abc" already present', reason="Pulled"),
    kubelet_event("Container gateway failed liveness probe, will be restarted", reason="Killing", event_type="Normal"),
    kubelet_event("Readiness probe warning: Probe terminated redirects", reason="ProbeWarning"),
]


class TestProbeFailures:
    def test_an_aggregated_readiness_failure_is_read_whole(self) -> None:
        events = [*NOISE, kubelet_event(READINESS_404, count=4, first=5, last=20)]
        assert probe_failures(events, {WEB}) == [
            ProbeFailure(
                pod=WEB,
                container="gateway",
                probe="Readiness",
                count=4,
                message=READINESS_404,
                status_code=404,
                first_seen=at(5),
                last_seen=at(20),
            )
        ]

    def test_a_new_style_event_counts_its_series(self) -> None:
        (failure,) = probe_failures([series_event(READINESS_404, count=3, first=5, last=35)], {WEB})
        assert failure.count == 3
        assert failure.first_seen == datetime(2026, 3, 2, 10, 0, 5, 123456, tzinfo=UTC)
        assert failure.last_seen == datetime(2026, 3, 2, 10, 0, 35, 654321, tzinfo=UTC)

    def test_an_events_k8s_io_v1_event_is_read_too(self) -> None:
        event = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": f"{WEB}.182a9e3b5c1d7f00", "namespace": NS},
            "eventTime": None,
            "reportingController": "kubelet",
            "reportingInstance": "node-1",
            "action": "",
            "reason": "Unhealthy",
            "regarding": {"kind": "Pod", "namespace": NS, "name": WEB, "fieldPath": "spec.containers{gateway}"},
            "note": READINESS_404,
            "type": "Warning",
            "deprecatedSource": {"component": "kubelet", "host": "node-1"},
            "deprecatedFirstTimestamp": ts(5),
            "deprecatedLastTimestamp": ts(50),
            "deprecatedCount": 9,
        }
        (failure,) = probe_failures([event], {WEB})
        assert (failure.count, failure.first_seen, failure.last_seen) == (9, at(5), at(50))

    def test_each_probe_and_container_is_its_own_failure(self) -> None:
        events = [
            kubelet_event(LIVENESS_REFUSED, count=2, first=30, last=40),
            kubelet_event(READINESS_404, count=4),
            kubelet_event("Startup probe failed: cat: can't open '/tmp/started': No such file", container="init-db"),
        ]
        failures = probe_failures(events, {WEB})
        assert [(f.container, f.probe, f.count) for f in failures] == [
            ("gateway", "Readiness", 4),
            ("gateway", "Liveness", 2),
            ("init-db", "Startup", 1),
        ]
        assert failures[1].status_code is None
        assert failures[1].detail.startswith('Get "http://10.244.0.12:8080/health": dial tcp')

    def test_a_changed_output_adds_up_and_the_latest_message_wins(self) -> None:
        events = [
            kubelet_event("Readiness probe failed: HTTP probe failed with statuscode: 503", count=3, first=5, last=15),
            kubelet_event(READINESS_404, count=2, first=20, last=25),
        ]
        (failure,) = probe_failures(events, {WEB})
        assert (failure.count, failure.status_code, failure.message) == (5, 404, READINESS_404)
        assert (failure.first_seen, failure.last_seen) == (at(5), at(25))

    def test_an_errored_probe_counts_as_a_failure(self) -> None:
        errored = (
            "Readiness probe errored and resulted in unknown state: rpc error: code = NotFound "
            "desc = failed to exec in container: container is in CONTAINER_EXITED state"
        )
        (failure,) = probe_failures([kubelet_event(errored)], {WEB})
        assert failure.probe == "Readiness"
        assert failure.detail.startswith("rpc error: code = NotFound")

    def test_other_pods_and_earlier_pods_of_the_same_name_are_left_out(self) -> None:
        events = [
            kubelet_event(READINESS_404, pod=OTHER),
            kubelet_event(READINESS_404, uid="an-earlier-pod", count=7),
            kubelet_event(READINESS_404, count=2),
        ]
        assert [f.count for f in probe_failures(events, {WEB})] == [9]
        assert [f.count for f in probe_failures(events, {WEB}, pod_uids={WEB_UID})] == [2]

    def test_events_on_other_kinds_and_without_a_field_path(self) -> None:
        on_deployment = kubelet_event(READINESS_404)
        on_deployment["involvedObject"]["kind"] = "Deployment"
        no_path = kubelet_event(READINESS_404)
        del no_path["involvedObject"]["fieldPath"]
        (failure,) = probe_failures([on_deployment, no_path], {WEB})
        assert failure.container is None

    def test_noise_alone_is_no_failure(self) -> None:
        assert probe_failures(NOISE, {WEB}) == []


def failure(pod: str, count: int, probe: str = "Readiness", last: int = 20) -> ProbeFailure:
    return ProbeFailure(pod, "gateway", probe, count, READINESS_404, 404, at(5), at(last))


class TestBudget:
    def test_more_than_the_allowance_on_one_pod_breaks_it(self) -> None:
        failures = [failure(WEB, 3), failure(OTHER, 1)]
        assert budget_exceeded(failures, replicas=2, allowed_per_replica=2) == failures[0]

    def test_the_allowance_itself_is_allowed(self) -> None:
        assert budget_exceeded([failure(WEB, 2), failure(OTHER, 2)], replicas=2, allowed_per_replica=2) is None

    def test_the_budget_is_per_pod_not_the_sum_over_pods(self) -> None:
        spread = [failure(f"web-{i}", 2) for i in range(5)]  # 10 in all, more than replicas x allowance
        assert budget_exceeded(spread, replicas=2, allowed_per_replica=2) is None

    def test_probes_of_one_pod_add_up(self) -> None:
        failures = [failure(WEB, 2), failure(WEB, 1, probe="Liveness")]
        assert budget_exceeded(failures, replicas=1, allowed_per_replica=2) == failures[0]

    def test_startup_failures_are_not_counted_by_default(self) -> None:
        booting = [failure(WEB, 25, probe="Startup")]
        assert budget_exceeded(booting, replicas=1, allowed_per_replica=2) is None
        assert budget_exceeded(booting, replicas=1, allowed_per_replica=2, probes={"Startup"}) == booting[0]

    def test_the_worst_pod_is_named(self) -> None:
        failures = [failure("web-a", 4), failure("web-b", 6), failure("web-c", 6)]
        assert budget_exceeded(failures, replicas=3, allowed_per_replica=2) == failures[1]

    def test_negative_numbers_are_refused(self) -> None:
        with pytest.raises(ValueError, match="allowed_per_replica >= 0"):
            budget_exceeded([], replicas=1, allowed_per_replica=-1)


class TestDescribe:
    def test_one_line_with_the_count_and_the_latest_output(self) -> None:
        (found,) = probe_failures(
            [kubelet_event(READINESS_404, count=4, pod="web-6c9d", container="web")], {"web-6c9d"}
        )
        assert describe(found) == (
            "pod web-6c9d container web: Readiness probe failed 4 times, latest: HTTP probe failed with statuscode: 404"
            " (status code 404)"
        )

    def test_one_time_and_no_container(self) -> None:
        single = ProbeFailure(WEB, None, "Liveness", 1, LIVENESS_REFUSED, None, None, None)
        assert describe(single).startswith(f"pod {WEB}: Liveness probe failed 1 time, latest: Get ")
