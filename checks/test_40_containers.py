"""Inside the containers: the service process runs as non-root and listens on its port.

Uses pytest-testinfra's kubectl backend (`kubectl exec`). Exec needs `create` on `pods/exec`,
which the read-only `view` role does not grant: under such a context the check is skipped with
that reason rather than failed. `id -u` and /proc/net/tcp work on busybox-based images.
"""

from __future__ import annotations

from typing import Any

import pytest
import testinfra

from deploybook.digests import running_images

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _listening_ports(proc_net_tcp: str) -> set[int]:
    ports = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == LISTEN:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_runs_as_non_root_and_listens(
    service: Any, environment: Any, kube: Any, deployed: dict[str, list[Any]]
) -> None:
    """In one ready container per service: uid is not 0, and the declared port is listening."""
    namespace = environment.cluster.namespace
    running = [
        c
        for wl in deployed[service.name]
        for c in running_images(
            kube, namespace, wl.selector, image_repository=service.image
        )
        if c.ready
    ]
    assert running, f"no ready container of {service.name} to look into"
    target = running[0]
    url = f"kubectl://{target.pod}?container={target.container}&namespace={namespace}"
    if kube.context:
        url += f"&context={kube.context}"
    host = testinfra.get_host(url)
    uid = host.run("id -u")
    if uid.rc != 0 and "forbidden" in uid.stderr.lower():
        pytest.skip(
            f"context {kube.context} may not exec into pods (needs create pods/exec; "
            f"the view role lacks it): {uid.stderr.strip()}"
        )
    assert uid.rc == 0, f"id -u failed in {target.pod}: {uid.stderr}"
    assert uid.stdout.strip() != "0", (
        f"{target.pod}/{target.container} runs as root (uid 0)"
    )
    if service.port is None:
        return
    tcp = host.run("cat /proc/net/tcp /proc/net/tcp6")
    ports = _listening_ports(tcp.stdout)
    assert service.port in ports, (
        f"{target.pod}/{target.container} listens on "
        f"{sorted(ports)}, not on declared port {service.port}"
    )
