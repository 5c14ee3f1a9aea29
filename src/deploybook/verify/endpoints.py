"""Service endpoints: ready addresses from EndpointSlices, and HTTP checks that answer.

`ready_endpoints` reads the discovery.k8s.io/v1 EndpointSlices of a Service (label
`kubernetes.io/service-name`) and splits their endpoints into ready and not ready.

`http_check` sends one declared request (path, expected status, JSON fields or text the body
must hold, latency budget) to a Service. By default it goes through the API server's service
proxy, `/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`, with the kubeconfig's own
credentials and CA (TLS verified), so it needs no route into the cluster. That takes `get` on
`services/proxy`, which the built-in `view` role does not grant: a 403 is reported as such
(`HttpResult.forbidden`) so a read-only run can say what permission is missing. When the
environment gives an external URL for the service, the request goes there instead.

Only GET requests are sent; nothing here changes the cluster.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from deploybook.cluster.watch import list_raw
from deploybook.http import SnapshotSession

__all__ = [
    "PROXY_AT_ONCE",
    "EndpointReport",
    "HttpResult",
    "endpoint_report",
    "http_check",
    "proxy_path",
    "ready_endpoints",
    "service_port_for",
]

BODY_LIMIT = 4000  # characters of the body kept for the report


class HttpCheckSpec(Protocol):
    """The shape of `deploybook.config.environment.HttpCheck` that this module reads."""

    @property
    def path(self) -> str: ...
    @property
    def expect_status(self) -> int: ...
    @property
    def expect_json(self) -> Mapping[str, Any] | None: ...
    @property
    def expect_text(self) -> str | None: ...
    @property
    def latency_ms(self) -> int | None: ...


@dataclass(frozen=True)
class EndpointReport:
    """Endpoints of one Service: which addresses are ready, which are not, and from where."""

    namespace: str
    service: str
    ready: tuple[str, ...]  # "10.1.0.7 (pod web-abc)"
    not_ready: tuple[str, ...]
    slices: int

    @property
    def verdict(self) -> str:
        """Short status for the summary table."""
        if not self.slices:
            return "no EndpointSlice"
        return f"{len(self.ready)} ready" + (f", {len(self.not_ready)} not" if self.not_ready else "")


@dataclass(frozen=True)
class HttpResult:
    """What one HTTP check sent, what came back, and what was wrong with it."""

    url: str
    status: int
    latency_ms: float
    body: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the answer met every expectation."""
        return not self.problems

    @property
    def forbidden(self) -> bool:
        """The API server refused the proxy request (the context lacks services/proxy)."""
        return self.status == 403 and "/proxy/" in self.url and '"kind":"Status"' in self.body


def ready_endpoints(kube: Any, namespace: str, service: str) -> EndpointReport:
    """Read the Service's EndpointSlices; an endpoint with no `ready` condition counts as ready."""
    slices, _ = list_raw(
        kube.discovery.list_namespaced_endpoint_slice,
        namespace,
        label_selector=f"kubernetes.io/service-name={service}",
    )
    return _report(namespace, service, slices)


def endpoint_report(namespace: str, service: str, slices: list[Mapping[str, Any]]) -> EndpointReport:
    """Judge the EndpointSlices of `service` among `slices` (all slices of the namespace will do)."""
    mine = [
        s for s in slices if (s.get("metadata", {}).get("labels") or {}).get("kubernetes.io/service-name") == service
    ]
    return _report(namespace, service, mine)


def settled_reports(
    namespace: str, services: list[str], read_slices: Callable[[str], list[Any]], *, wait_s: float
) -> list[EndpointReport]:
    """The report of each Service, asked again for up to ``wait_s`` while one has no ready endpoint.

    The EndpointSlice controller marks a pod's endpoint ready a moment after the kubelet marks
    the pod ready; right after a rollout, under load, a slice can still say not ready.
    """
    give_up = time.monotonic() + wait_s
    while True:
        reports = [endpoint_report(namespace, name, read_slices(name)) for name in services]
        if all(r.ready for r in reports) or time.monotonic() + 0.5 >= give_up:
            return reports
        time.sleep(0.5)


def _report(namespace: str, service: str, mine: list[Mapping[str, Any]]) -> EndpointReport:
    ready: list[str] = []
    not_ready: list[str] = []
    for item in mine:
        for endpoint in item.get("endpoints") or ():
            target = (endpoint.get("targetRef") or {}).get("name", "?")
            where = [f"{address} (pod {target})" for address in endpoint.get("addresses") or ()]
            is_ready = (endpoint.get("conditions") or {}).get("ready") is not False
            (ready if is_ready else not_ready).extend(where)
    return EndpointReport(namespace, service, tuple(ready), tuple(not_ready), len(mine))


def service_port_for(
    service: Mapping[str, Any],
    container_port: int | None,
    named_ports: Mapping[str, int] | None = None,
) -> int:
    """The Service port that forwards to `container_port` (the proxy takes Service ports).

    A port's targetPort may be a number or a container port name (resolved through
    `named_ports`); without a match, or without a declared container port, the first port
    is used.
    """
    ports = service.get("spec", {}).get("ports") or ()
    if not ports:
        name = service.get("metadata", {}).get("name", "?")
        raise ValueError(f"Service {name} declares no ports")
    names = named_ports or {}
    for port in ports:
        target = port.get("targetPort", port.get("port"))
        resolved = names.get(target) if isinstance(target, str) else target
        if container_port is not None and resolved == container_port:
            return int(port["port"])
    return int(ports[0]["port"])


def proxy_path(namespace: str, service: str, port: int | str, path: str) -> str:
    """The API server path that proxies `path` to `service:port`."""
    return f"/api/v1/namespaces/{quote(namespace)}/services/{quote(service)}:{port}/proxy/{path.lstrip('/')}"


def http_check(
    kube: Any,
    namespace: str,
    check: HttpCheckSpec,
    *,
    service: str,
    port: int,
    timeout_s: float = 10.0,
    external_url: str | None = None,
    ca_file: str | None = None,
) -> HttpResult:
    """Send one declared GET to the Service and judge the answer (status, body, latency).

    A 5xx answer is asked again, once a second, until ``timeout_s`` has passed: right after a
    release a Service may answer before the backend it calls has finished rolling out. The
    latency judged is the last attempt's."""
    give_up = time.monotonic() + timeout_s
    path = proxy_path(namespace, service, port, check.path)
    while True:
        if external_url:
            url = external_url.rstrip("/") + "/" + check.path.lstrip("/")
            started = time.monotonic()
            status, body = _get_external(url, timeout_s, ca_file)
        else:
            url = kube.server.rstrip("/") + path
            with _PROXY_SLOTS:  # the latency is timed once a slot is free: waiting is not the Service's
                started = time.monotonic()
                status, body = _get_through_proxy(kube, path, timeout_s)
        latency_ms = (time.monotonic() - started) * 1000
        if status < 500 or check.expect_status >= 500 or time.monotonic() + 1 >= give_up:
            break
        time.sleep(1)
    problems = _judge(check, status, body, latency_ms)
    return HttpResult(url, status, round(latency_ms, 1), body[:BODY_LIMIT], problems)


PROXY_AT_ONCE = 16
"""HTTP checks through the API server's proxy in flight at once. Every service's checks run in
a thread of their own; unbounded, 100 services opened about 100 connections to the API server,
each with its own TLS handshake, on the same cores as the server (bench/, checks at 100
Deployments); bounded, at most 16 are opened, kept open and reused, and the other checks
wait for one."""
_PROXY_SLOTS = threading.BoundedSemaphore(PROXY_AT_ONCE)


def _get_through_proxy(kube: Any, path: str, timeout_s: float) -> tuple[int, str]:
    resource, _, query = path.partition("?")
    params = [tuple(p.split("=", 1)) for p in query.split("&") if "=" in p] if query else None
    try:
        response = kube.api_client.call_api(
            resource,
            "GET",
            query_params=params,
            header_params={"Accept": "*/*"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout_s,
        )
    except ApiException as exc:  # an answer all the same: the check judges its status and body
        body = exc.body if isinstance(exc.body, str) else (exc.body or b"").decode("utf-8", errors="replace")
        return int(exc.status), body
    return int(response.status), (response.data or b"").decode("utf-8", errors="replace")


def _get_external(url: str, timeout_s: float, ca_file: str | None) -> tuple[int, str]:
    # TLS is always verified: the stack's CA when given, requests' trust otherwise. The session
    # reads a copy of the environment, not os.environ, which is unsafe in threads (deploybook.environ).
    with SnapshotSession() as session:
        response = session.get(url, timeout=timeout_s, verify=ca_file or True)
    return response.status_code, response.text


def _judge(check: HttpCheckSpec, status: int, body: str, latency_ms: float) -> tuple[str, ...]:
    problems: list[str] = []
    if status != check.expect_status:
        problems.append(f"status {status}, expected {check.expect_status}")
    if check.latency_ms is not None and latency_ms > check.latency_ms:
        problems.append(f"answered in {latency_ms:.0f} ms, budget {check.latency_ms} ms")
    if check.expect_text is not None and check.expect_text not in body:
        problems.append(f"body does not contain {check.expect_text!r}")
    if check.expect_json:
        problems.extend(_json_problems(check.expect_json, body))
    return tuple(problems)


def _json_problems(expected: Mapping[str, Any], body: str) -> list[str]:
    try:
        doc = json.loads(body)
    except ValueError:
        return [f"body is not JSON, expected fields {dict(expected)}"]
    problems = []
    for key, want in expected.items():
        got: Any = doc
        for part in str(key).split("."):  # "a.b" reaches into nested objects
            got = got.get(part, _MISSING) if isinstance(got, dict) else _MISSING
        if got is _MISSING:
            problems.append(f"JSON field {key!r} missing, expected {want!r}")
        elif got != want:
            problems.append(f"JSON field {key!r} is {got!r}, expected {want!r}")
    return problems


_MISSING = object()
