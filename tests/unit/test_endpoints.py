"""EndpointSlice readiness and HTTP checks through the service proxy, with a fake transport.

The real kubernetes ApiClient builds and signs the request; only urllib3's pool manager (the
wire) is replaced, so the URL, the auth header and the TLS settings are the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import urllib3
from kubernetes import client as k8s

from deploybook.verify import endpoints
from deploybook.verify.endpoints import http_check, proxy_path, ready_endpoints, service_port_for
from deploybook.verify.workloads import services_selecting_nothing, workloads_in


@dataclass(frozen=True)
class Check:
    path: str = "/health"
    expect_status: int = 200
    expect_json: dict[str, Any] | None = None
    expect_text: str | None = None
    latency_ms: int | None = None


class Wire:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body, self.sent = status, body, []

    def request(self, method: str, url: str, **kw: Any) -> urllib3.HTTPResponse:
        self.sent.append((method, url, kw.get("headers", {}), dict(kw.get("fields") or ())))
        return urllib3.HTTPResponse(body=self.body, status=self.status, preload_content=True)


def kube_with(wire: Wire) -> Any:
    cfg = k8s.Configuration(
        host="https://127.0.0.1:6443",
        api_key={"authorization": "Bearer t0ken"},  # as load_kube_config sets a token
    )
    api = k8s.ApiClient(cfg)
    api.rest_client.pool_manager = wire
    kube = type("Kube", (), {})()
    kube.api_client, kube.server = api, cfg.host
    kube.discovery = k8s.DiscoveryV1Api(api)
    return kube


def test_proxy_path_format() -> None:
    assert proxy_path("dx29", "gateway", 8080, "/health") == (
        "/api/v1/namespaces/dx29/services/gateway:8080/proxy/health"
    )


def test_http_check_through_proxy_passes_and_sends_bearer_token() -> None:
    wire = Wire(200, json.dumps({"service": "gateway", "version": {"git": "3f2c"}}).encode())
    result = http_check(
        kube_with(wire),
        "dx29",
        Check(expect_json={"service": "gateway", "version.git": "3f2c"}),
        service="gateway",
        port=8080,
    )
    assert result.ok, result.problems
    method, url, headers, _ = wire.sent[0]
    assert method == "GET"
    assert url == "https://127.0.0.1:6443/api/v1/namespaces/dx29/services/gateway:8080/proxy/health"
    assert headers["authorization"] == "Bearer t0ken"


class SlowWire(Wire):
    """Answers after ``delay_s``, counting the requests in flight at once."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(200, b"ok")
        self.delay_s, self.in_flight, self.most = delay_s, 0, 0
        self._lock = threading.Lock()

    def request(self, method: str, url: str, **kw: Any) -> urllib3.HTTPResponse:
        with self._lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(self.delay_s)
        with self._lock:
            self.in_flight -= 1
        return super().request(method, url, **kw)


def test_checks_through_the_proxy_wait_for_a_slot_and_their_latency_leaves_the_wait_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(endpoints, "_PROXY_SLOTS", threading.BoundedSemaphore(2))
    wire = SlowWire(0.1)
    kube = kube_with(wire)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: http_check(kube, "dx29", Check(), service=f"s{i}", port=80), range(6)))
    assert all(r.ok for r in results)
    assert wire.most == 2  # six checks at once, two in flight: the rest waited for a slot
    # Each waited up to 0.2 s for its slot; the latency judged is the answer's alone.
    assert max(r.latency_ms for r in results) < 190, [r.latency_ms for r in results]


def test_http_check_reports_every_problem_side_by_side() -> None:
    wire = Wire(503, b'{"service": "terms"}')
    result = http_check(
        kube_with(wire),
        "dx29",
        Check(
            expect_json={"service": "gateway", "ready": True},
            expect_text="ok",
            latency_ms=0,
        ),
        service="gateway",
        port=8080,
        timeout_s=0.5,
    )
    assert not result.ok
    assert result.problems[0] == "status 503, expected 200"
    assert any(p.startswith("answered in") and "budget 0 ms" in p for p in result.problems)
    assert "body does not contain 'ok'" in result.problems
    assert "JSON field 'service' is 'terms', expected 'gateway'" in result.problems
    assert "JSON field 'ready' missing, expected True" in result.problems


class Sequence(Wire):
    """Answers with each (status, body) in turn, then keeps giving the last one."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        super().__init__(*answers[0])
        self.answers = list(answers)

    def request(self, method: str, url: str, **kw: Any) -> urllib3.HTTPResponse:
        self.status, self.body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return super().request(method, url, **kw)


def test_a_5xx_is_asked_again_until_the_backend_answers() -> None:
    wire = Sequence((502, b"bad gateway"), (200, b'{"service": "gateway"}'))
    result = http_check(
        kube_with(wire), "dx29", Check(expect_json={"service": "gateway"}), service="gateway", port=80, timeout_s=5
    )
    assert result.ok and len(wire.sent) == 2, (result.problems, wire.sent)


def test_forbidden_proxy_is_recognised() -> None:
    body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}'
    result = http_check(kube_with(Wire(403, body)), "dx29", Check(), service="g", port=80)
    assert result.forbidden and not result.ok


def test_ready_endpoints_split_ready_and_not_ready() -> None:
    slices = {
        "items": [
            {
                "endpoints": [
                    {
                        "addresses": ["10.1.0.7"],
                        "conditions": {"ready": True},
                        "targetRef": {"name": "web-a"},
                    },
                    {
                        "addresses": ["10.1.0.8"],
                        "conditions": {"ready": False},
                        "targetRef": {"name": "web-b"},
                    },
                    {"addresses": ["10.1.0.9"], "targetRef": {"name": "web-c"}},
                ]
            }
        ],
        "metadata": {"resourceVersion": "5"},
    }
    wire = Wire(200, json.dumps(slices).encode())
    report = ready_endpoints(kube_with(wire), "dx29", "web")
    assert report.ready == ("10.1.0.7 (pod web-a)", "10.1.0.9 (pod web-c)")
    assert report.not_ready == ("10.1.0.8 (pod web-b)",)
    assert report.verdict == "2 ready, 1 not"
    assert wire.sent[0][3] == {"labelSelector": "kubernetes.io/service-name=web"}
    assert "/apis/discovery.k8s.io/v1/namespaces/dx29/endpointslices" in wire.sent[0][1]


def test_service_without_slices_says_so() -> None:
    wire = Wire(200, b'{"items": [], "metadata": {}}')
    assert ready_endpoints(kube_with(wire), "dx29", "web").verdict == "no EndpointSlice"


def _service(*ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "dx29-web"}, "spec": {"ports": list(ports)}}


def test_service_port_is_the_one_forwarding_to_the_container_port() -> None:
    svc = _service({"port": 9090, "targetPort": 9091}, {"port": 80, "targetPort": 8080})
    assert service_port_for(svc, 8080) == 80


def test_named_target_port_is_resolved_through_the_container_ports() -> None:
    svc = _service(
        {"name": "metrics", "port": 9090, "targetPort": "metrics"}, {"name": "http", "port": 80, "targetPort": "http"}
    )
    assert service_port_for(svc, 8080, {"http": 8080, "metrics": 9100}) == 80


def test_without_a_match_the_first_service_port_is_used() -> None:
    assert service_port_for(_service({"port": 80, "targetPort": "http"}), None) == 80
    assert service_port_for(_service({"port": 81}), 8080) == 81


def test_a_service_without_ports_is_an_error_naming_it() -> None:
    import pytest

    with pytest.raises(ValueError, match="dx29-web declares no ports"):
        service_port_for(_service(), 8080)


def test_endpoint_report_picks_the_services_slices_from_a_namespace_list() -> None:
    from deploybook.verify.endpoints import endpoint_report

    def eps(service: str, ready: bool) -> dict[str, Any]:
        return {
            "metadata": {"labels": {"kubernetes.io/service-name": service}},
            "endpoints": [{"addresses": ["10.1.0.9"], "conditions": {"ready": ready}, "targetRef": {"name": "p"}}],
        }

    slices = [eps("web", True), eps("api", False), eps("web", False)]
    report = endpoint_report("dx29", "web", slices)
    assert (report.ready, report.not_ready, report.slices) == (("10.1.0.9 (pod p)",), ("10.1.0.9 (pod p)",), 2)
    assert endpoint_report("dx29", "none", slices).verdict == "no EndpointSlice"


def test_a_slice_not_yet_ready_after_a_rollout_is_read_again_until_it_is() -> None:
    from deploybook.verify.endpoints import settled_reports

    def answer(ready: bool) -> list[dict[str, Any]]:
        endpoint = {"addresses": ["10.1.0.9"], "conditions": {"ready": ready}, "targetRef": {"name": "db-0"}}
        return [{"metadata": {"labels": {"kubernetes.io/service-name": "db"}}, "endpoints": [endpoint]}]

    answers = iter([answer(False), answer(False), answer(True)])
    asked: list[str] = []

    def read(service: str) -> list[dict[str, Any]]:
        asked.append(service)
        return next(answers)

    (report,) = settled_reports("shop", ["db"], read, wait_s=5.0)
    assert report.ready == ("10.1.0.9 (pod db-0)",) and asked == ["db", "db", "db"]
    (alone,) = settled_reports("shop", ["db"], lambda _: answer(False), wait_s=0.0)  # checks alone: as found
    assert not alone.ready


def test_a_service_whose_selector_matches_no_pod_and_no_workload_is_named() -> None:
    def service(name: str, selector: dict[str, str] | None) -> dict[str, Any]:
        return {"metadata": {"name": name}, "spec": {"selector": selector} if selector is not None else {}}

    web = service("web", {"app": "web"})
    typo = service("metrics", {"app": "wbe"})
    external = {"metadata": {"name": "db"}, "spec": {"type": "ExternalName", "externalName": "db.example"}}
    later = service("worker", {"app": "worker", "tier": "jobs"})
    pods = [{"metadata": {"name": "web-1", "labels": {"app": "web", "pod-template-hash": "abc"}}}]
    template = {"metadata": {"labels": {"app": "worker", "tier": "jobs"}}, "spec": {"containers": []}}
    worker = {"kind": "Deployment", "metadata": {"name": "worker"}, "spec": {"template": template}}
    found = services_selecting_nothing([web, typo, external, later], pods, workloads_in([worker]))
    assert [s["metadata"]["name"] for s in found] == ["metrics"]  # no pod yet, but a workload's template: kept
    assert services_selecting_nothing([later], pods, []) == [later]
