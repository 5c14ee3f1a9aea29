"""Looking inside a container: parsing /proc/net/tcp, the kubectl host spec, exec outcomes.

The command runner (testinfra's `host.run`) is the transport seam and is faked here.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from deploybook.verify.containers import (
    ExecFailed,
    ExecForbidden,
    inspect_container,
    kubectl_url,
    listening_ports,
)

TCP = (
    "  sl  local_address rem_address   st tx_queue rx_queue\n"
    "   0: 00000000:0050 00000000:0000 0A 00000000:00000000\n"
    "   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000\n"
)
TCP6 = (
    "  sl  local_address                         remote_address                        st\n"
    "   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A\n"
    "   1: 0000000000000000FFFF00009700F40A:1F90 0000000000000000FFFF00000100F40A:9DC6 06\n"
)


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str = ""


def runner(answer: Result):
    seen: list[str] = []

    def run(command: str) -> Result:
        seen.append(command)
        return answer

    run.seen = seen  # type: ignore[attr-defined]
    return run


def test_listening_ports_reads_ipv4_and_ipv6_tables_and_ignores_other_states() -> None:
    assert listening_ports(TCP + TCP6) == {80, 8080}


def test_kubectl_url_carries_context_and_a_single_kubeconfig() -> None:
    url = kubectl_url("web-1", "web", "ns", context="view", kubeconfig="/k/config")
    assert url == "kubectl://web-1?container=web&namespace=ns&context=view&kubeconfig=%2Fk%2Fconfig"
    assert "kubeconfig" not in kubectl_url("web-1", "web", "ns", kubeconfig="/a:/b")


def test_inspect_reports_uid_and_ports_even_when_tcp6_is_missing() -> None:
    run = runner(Result(1, "10001\n" + TCP, "cat: can't open '/proc/net/tcp6': No such file"))
    facts = inspect_container("web-1", "web", "ns", run=run)
    assert (facts.uid, facts.listening) == (10001, frozenset({80}))
    assert run.seen == ["id -u; cat /proc/net/tcp /proc/net/tcp6"]  # type: ignore[attr-defined]  one exec


def test_forbidden_exec_is_its_own_error() -> None:
    denied = Result(1, "", 'Error from server (Forbidden): cannot create resource "pods/exec"')
    with pytest.raises(ExecForbidden, match="pods/exec"):
        inspect_container("web-1", "web", "ns", run=runner(denied))


def test_an_exec_that_says_nothing_usable_names_the_pod_and_what_came_back() -> None:
    gone = Result(1, "", "error: unable to upgrade connection: container not found")
    with pytest.raises(ExecFailed, match=r"pod ns/web-1 container web exited 1.*container not found"):
        inspect_container("web-1", "web", "ns", run=runner(gone))
    with pytest.raises(ExecFailed, match="without a socket table"):
        inspect_container("web-1", "web", "ns", run=runner(Result(1, "10001\n", "cat: /proc/net/tcp: No such file")))


def test_facts_key_shares_one_exec_between_same_image_and_spec_only() -> None:
    from deploybook.verify.containers import facts_key

    def pod(image: str, **extra: object) -> dict[str, object]:
        return {"spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}], **extra}]}}

    a = facts_key(pod("r/tiny-001@sha256:1"), "app", "sha256:1")
    assert a == facts_key(pod("r/tiny-002@sha256:1"), "app", "sha256:1")  # same content, other repository
    assert a != facts_key(pod("r/tiny-001@sha256:1"), "app", "sha256:2")
    assert a != facts_key(pod("r/tiny-001@sha256:1", securityContext={"runAsUser": 0}), "app", "sha256:1")
    assert facts_key(pod("r/x"), "app", None) is None


def test_workloads_are_found_in_a_list_whose_items_carry_no_kind() -> None:
    """A list's items have no kind; a checks run finds a service's workloads by record or image."""
    from deploybook.verify.workloads import namespace_workloads, workloads_running

    item = {
        "metadata": {"name": "dx29-web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "spec": {"containers": [{"name": "web", "image": "localhost:5000/dx29/web@sha256:" + "a" * 64}]}
            },
        },
    }
    listed = namespace_workloads({"Deployment": [item]})
    assert [w.title for w in workloads_running("dx29/web", listed)] == ["Deployment/dx29-web"]
    assert [w.title for w in workloads_running("dx29/web", listed, named=("Deployment/dx29-web",))] == [
        "Deployment/dx29-web"
    ]
    assert workloads_running("dx29/api", listed) == []


def test_a_snapshot_finds_each_workloads_pods_by_label_and_lists_again_when_told() -> None:
    """Checks alone index the snapshot's pods by label: the same pods as matching every selector
    against every pod, in listing order, for matchLabels and matchExpressions alike."""
    import json
    from types import SimpleNamespace

    from deploybook.verify.namespace import SnapshotReader
    from deploybook.verify.workloads import Workload

    def pod(name: str, **labels: str) -> dict[str, object]:
        return {"metadata": {"name": name, "labels": labels}}

    listed = [[pod("web-1", app="web"), pod("web-canary", app="web", track="canary"), pod("api-1", app="api")]]
    calls: list[str] = []

    def list_pods(namespace: str, **kw: object) -> object:
        calls.append(namespace)
        return SimpleNamespace(data=json.dumps({"items": listed[0]}))

    def none(*args: object, **kw: object) -> object:
        return SimpleNamespace(data='{"items": []}')

    kube = SimpleNamespace(
        core=SimpleNamespace(list_namespaced_pod=list_pods, list_namespaced_service=none),
        discovery=SimpleNamespace(list_namespaced_endpoint_slice=none),
        apps=SimpleNamespace(**{f"list_namespaced_{k}": none for k in ("deployment", "stateful_set", "daemon_set")}),
        batch=SimpleNamespace(list_namespaced_job=none, list_namespaced_cron_job=none),
    )
    reader = SnapshotReader(kube, "ns")

    def names(**match: object) -> list[str]:
        return [p["metadata"]["name"] for p in reader.pods_of(Workload("Deployment", "x", match=match))]

    assert names(matchLabels={"app": "web"}) == ["web-1", "web-canary"]
    assert names(matchLabels={"track": "canary", "app": "web"}) == ["web-canary"]
    assert names(matchLabels={"app": "web", "track": "stable"}) == []
    assert names(matchExpressions=[{"key": "app", "operator": "In", "values": ["api"]}]) == ["api-1"]
    assert calls == ["ns"]  # one listing for every question
    listed[0] = [pod("web-2", app="web")]
    reader.forget_pods()
    assert names(matchLabels={"app": "web"}) == ["web-2"] and calls == ["ns", "ns"]
