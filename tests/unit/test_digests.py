"""Digest comparison against fake pod lists and a fake registry (transport seams only)."""

from __future__ import annotations

import json
from typing import Any

from deploybook.errors import RegistryError
from deploybook.images.references import digest_of, repository_path
from deploybook.verify.digests import containers_in, digest_mismatches, registry_problem, running_images

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


class Raw:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()


def fake_kube(pods: list[dict[str, Any]]) -> Any:
    kube = type("Kube", (), {})()
    kube.core = type("Core", (), {})()
    kube.calls = []

    def list_pods(namespace: str, **kw: Any) -> Raw:
        kube.calls.append((namespace, kw))
        return Raw({"items": pods, "metadata": {"resourceVersion": "1"}})

    kube.core.list_namespaced_pod = list_pods
    return kube


def pod(name: str, image_id: str, *, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {
            "containers": [
                {"name": "app", "image": f"localhost:5000/dx29/web@{A}"},
                {"name": "proxy", "image": "localhost:5000/envoy:1"},
            ]
        },
        "status": {
            "containerStatuses": [
                {"name": "app", "imageID": image_id, "ready": True},
                {"name": "proxy", "imageID": "x", "ready": True},
            ]
        },
    }


def test_digest_of_reads_containerd_and_docker_forms() -> None:
    assert digest_of(f"localhost:5000/dx29/web@{A}") == A
    assert digest_of(f"docker-pullable://localhost:5000/dx29/web@{A}") == A
    assert digest_of("") is None and digest_of("localhost:5000/dx29/web:1") is None


def test_repository_path_strips_registry_tag_and_digest() -> None:
    assert repository_path(f"localhost:5000/dx29/web@{A}", "localhost:5000") == "dx29/web"
    assert repository_path("localhost:5000/dx29/web:1.2", "localhost:5000") == "dx29/web"


def test_mismatch_names_pod_container_and_both_digests() -> None:
    kube = fake_kube(
        [
            pod("web-1", f"localhost:5000/dx29/web@{A}"),
            pod("web-2", f"localhost:5000/dx29/web@{B}"),
            pod("web-old", f"localhost:5000/dx29/web@{B}", deleting=True),
            pod("web-3", ""),
        ]
    )
    running = running_images(kube, "ns", "app=web", image_repository="dx29/web")
    assert [c.container for c in running] == [
        "app",
        "app",
        "app",
    ]  # sidecar and leaver skipped
    assert kube.calls == [("ns", {"_preload_content": False, "label_selector": "app=web"})]
    found = [str(m) for m in digest_mismatches(running, A)]
    assert found == [
        f"pod web-2 container app: running {B}, recorded {A}",
        f"pod web-3 container app: running no digest yet (image not pulled), recorded {A}",
    ]


class FakeRegistry:
    address = "localhost:5000"

    def __init__(self, answers: dict[str, str | Exception]) -> None:
        self.answers = answers

    def manifest_digest(self, repository: str, reference: str) -> str:
        answer = self.answers[reference]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_registry_problem_covers_gone_digest_and_moved_tag() -> None:
    assert registry_problem(FakeRegistry({A: A, "v1": A}), "dx29/web", A, "v1") is None
    gone = RegistryError("manifest dx29/web:x not found")
    assert "does not serve dx29/web@" in str(registry_problem(FakeRegistry({A: gone}), "dx29/web", A))
    moved = registry_problem(FakeRegistry({A: A, "v1": B}), "dx29/web", A, "v1")
    assert moved == f"tag dx29/web:v1 now points at {B}, the release recorded {A}"


def test_containers_in_a_listed_pod_set_leave_out_terminating_pods_and_other_images() -> None:
    from deploybook.verify.digests import containers_in

    def pod(name: str, image_id: str, *, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {
            "metadata": meta,
            "spec": {"containers": [{"name": "app", "image": "r/dx29/web@" + A}, {"name": "side", "image": "r/x:1"}]},
            "status": {"containerStatuses": [{"name": "app", "imageID": "r/dx29/web@" + image_id, "ready": True}]},
        }

    found = containers_in([pod("new", A), pod("old", B, deleting=True)], image_repository="dx29/web")
    assert [(c.pod, c.container, c.digest, c.ready) for c in found] == [("new", "app", A, True)]


def test_registry_is_asked_once_per_repository_and_reference() -> None:
    from deploybook.verify.digests import CachedManifests

    class Registry:
        address = "localhost:5000"

        def __init__(self) -> None:
            self.asked: list[tuple[str, str]] = []

        def manifest_digest(self, repository: str, reference: str) -> str:
            self.asked.append((repository, reference))
            if reference == "gone":
                raise RegistryError("manifest unknown")
            return A

    source = Registry()
    cached = CachedManifests(source)
    for _ in range(50):
        assert registry_problem(cached, "dx29/web", A, "v1") is None
        assert "does not serve" in (registry_problem(cached, "dx29/web", "gone") or "")
    assert source.asked == [("dx29/web", "v1"), ("dx29/web", "gone")]  # a tag naming the digest answers both


def test_a_lost_tag_is_named_when_the_digest_is_still_served() -> None:
    lost = registry_problem(FakeRegistry({A: A, "v1": RegistryError("manifest unknown")}), "dx29/web", A, "v1")
    assert lost is not None and lost.startswith("registry ") and "lost tag dx29/web:v1" in lost


def _check_digests(
    pods: list[dict[str, Any]],
    third_party: tuple[dict[str, str], ...],
    replicas: int = 1,
    objects: tuple[Any, ...] = (),
    listed: list[dict[str, Any]] | None = None,
) -> Any:
    """``deploybook.release.checking.digests`` of one service whose workload runs ``pods``
    (``objects``: what the service applied; ``listed``: the namespace's Pods)."""
    from types import SimpleNamespace

    from deploybook.release.checking import digests

    web = SimpleNamespace(title="Deployment/web", kind="Deployment", name="web", desired=replicas)
    release = SimpleNamespace(
        expected=lambda name: (A, None, "this run"),
        workloads=lambda service: [web],
        reader=SimpleNamespace(pods_of=lambda wl: pods, items=lambda kind: listed or []),
        third_party=lambda name: third_party,
        registry_answers=FakeRegistry({A: A}),
        applied_objects=lambda name: objects,
    )
    service = SimpleNamespace(name="web", image="dx29/web")
    said: list[object] = []
    return digests(release, service, said.append), said  # type: ignore[arg-type]


def _sidecar_pod(image_id: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1"},
        "spec": {
            "containers": [
                {"name": "app", "image": f"localhost:5000/dx29/web@{A}"},
                {"name": "cache", "image": f"localhost:5000/vendor/cache@{B}"},
            ]
        },
        "status": {
            "containerStatuses": [
                {"name": "app", "imageID": f"localhost:5000/dx29/web@{A}", "ready": True},
                {"name": "cache", "imageID": image_id, "ready": True},
            ]
        },
    }


PINNED_CACHE = (
    {
        "container": "cache",
        "written": "localhost:5000/vendor/cache:7",
        "pinned": f"localhost:5000/vendor/cache@{B}",
        "digest": B,
    },
)


def test_a_sidecar_of_a_vendor_image_is_checked_against_the_digest_it_was_pinned_to() -> None:
    report, said = _check_digests([_sidecar_pod(f"localhost:5000/vendor/cache@{B}")], PINNED_CACHE)
    assert [c.container for c in report.third_party] == ["cache"] and report.mismatches == ()
    assert [c.container for c in report.running] == ["app"]
    assert "1 container(s) of images no service builds: no mismatch(es)" in said


def test_a_sidecar_running_another_digest_is_a_mismatch() -> None:
    report, _ = _check_digests([_sidecar_pod(f"localhost:5000/vendor/cache@{A}")], PINNED_CACHE)
    assert [str(m) for m in report.mismatches] == [f"pod web-1 container cache: running {A}, recorded {B}"]


def test_a_service_scaled_to_zero_replicas_has_its_digest_check_skipped_with_the_reason() -> None:
    from deploybook.release.pipeline import Skipped

    report, _ = _check_digests([], (), replicas=0)
    assert isinstance(report, Skipped) and report.reason == "Deployment/web scaled to 0 replicas: no pod runs"
    running, _ = _check_digests([], (), replicas=1)  # one replica wanted and none running is no reason to skip
    assert not isinstance(running, Skipped) and running.running == ()


def test_a_checks_run_counts_the_containers_of_the_bare_pod_the_record_names() -> None:
    from deploybook.manifests.apply import AppliedObject

    seed = _sidecar_pod(f"localhost:5000/vendor/cache@{B}")
    seed["metadata"]["name"] = "web-seed"
    other = {**seed, "metadata": {"name": "not-ours"}}
    recorded = (AppliedObject("Pod", "ns", "web-seed", "recorded", False, api_version="v1"),)
    report, said = _check_digests([], PINNED_CACHE, objects=recorded, listed=[seed, other])
    assert [(c.pod, c.container) for c in report.running] == [("web-seed", "app")] and report.mismatches == ()
    assert "running sha256:" in said[-1] and "in 1 container(s)" in str(said[-1])


def _with_init_containers(pod: dict[str, Any], web_id: str, cache_id: str) -> dict[str, Any]:
    """``pod`` with a migration step of the service's image and a native sidecar of the vendor's."""
    spec = {
        **pod["spec"],
        "initContainers": [
            {"name": "migrate", "image": f"localhost:5000/dx29/web@{A}"},
            {"name": "cache-sidecar", "image": f"localhost:5000/vendor/cache@{B}", "restartPolicy": "Always"},
        ],
    }
    statuses = [{"name": "migrate", "imageID": web_id, "ready": False}, {"name": "cache-sidecar", "imageID": cache_id}]
    return {**pod, "spec": spec, "status": {**pod["status"], "initContainerStatuses": statuses}}


def test_init_containers_are_checked_against_the_digests_they_were_pinned_to() -> None:
    pod = _with_init_containers(
        _sidecar_pod(f"localhost:5000/vendor/cache@{B}"), f"localhost:5000/dx29/web@{A}", f"x@{B}"
    )
    report, _ = _check_digests([pod], PINNED_CACHE)
    assert [c.container for c in report.running] == ["migrate", "app"] and report.mismatches == ()
    assert [c.container for c in report.third_party] == ["cache-sidecar", "cache"]
    stale = _with_init_containers(_sidecar_pod(f"localhost:5000/vendor/cache@{B}"), f"x@{B}", f"x@{A}")
    report, _ = _check_digests([stale], PINNED_CACHE)
    assert [str(m) for m in report.mismatches] == [
        f"pod web-1 container migrate: running {B}, recorded {A}",
        f"pod web-1 container cache-sidecar: running {A}, recorded {B}",
    ]


def test_init_containers_are_left_out_unless_asked_for() -> None:
    pod = _with_init_containers(_sidecar_pod(f"x@{B}"), f"x@{A}", f"x@{B}")
    assert [c.container for c in containers_in([pod])] == ["app", "cache"]  # what an exec may target
