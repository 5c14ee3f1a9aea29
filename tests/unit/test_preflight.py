"""The preflight: every service rendered and dry-run before anything runs, with the apply fakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_apply import FakeCluster, FakeDynamic, FakeKube, FakeResources

from deploybook.config.environment import parse_environment
from deploybook.config.model import Environment
from deploybook.errors import PreflightFailed
from deploybook.release import preflight as preflight_module
from deploybook.release.preflight import PLACEHOLDER_DIGEST, ServicePreflight, placeholder_refs, preflight_release

NS = "dx29-test"
ENV_TEXT = f"""\
cluster: {{context: c, namespace: {NS}}}
registry: {{address: localhost:5000}}
branch: {{name: null}}
manifests: {{path: m}}
services:
  - {{name: gateway, context: a, image: dx29/gateway, manifest: gateway.yaml}}
  - {{name: terms, context: a, image: dx29/terms, manifest: terms.yaml}}
"""
MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: dx29-{name}-deployment}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: dx29-{name}-backend}}}}
  template:
    metadata: {{labels: {{app: dx29-{name}-backend}}}}
    spec:
      containers:
        - {{name: {name}, image: {image}, ports: [{{containerPort: {port}}}], resources: {{requests: {{cpu: 1m}}}}}}
"""


@pytest.fixture
def cluster() -> FakeCluster:
    c = FakeCluster()
    c.objects[("Namespace", None, NS)] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
    return c


@pytest.fixture
def kube(cluster: FakeCluster) -> Any:
    return FakeKube(FakeDynamic(FakeResources(cluster)))


def release(tmp_path: Path, **images: str) -> tuple[Environment, Path]:
    manifests = tmp_path / "m"
    manifests.mkdir()
    for name in ("gateway", "terms"):
        image = images.get(name, f"dx29/{name}")
        (manifests / f"{name}.yaml").write_text(MANIFEST.format(name=name, image=image, port=8080))
    env = parse_environment(ENV_TEXT, file=tmp_path / "environments" / "t.yaml", name="t", root=tmp_path)
    return env, manifests


def run_preflight(
    kube: Any, env: Environment, manifests: Path, known: dict[str, str | None] | None = None, **kw: Any
) -> list[ServicePreflight]:
    refs = placeholder_refs(env, known or {})
    return preflight_release(
        kube, env, manifests, refs=refs, pull_secret=None, release_id="20260101T000000Z-abc", git_sha="0" * 40, **kw
    )


def real_writes(cluster: FakeCluster) -> list[tuple[str, str, str, str | None]]:
    return [c for c in cluster.calls if c[0] == "apply" and c[3] is None]


def test_every_service_is_dry_run_with_placeholder_digests(tmp_path: Path, cluster: FakeCluster, kube: Any) -> None:
    env, manifests = release(tmp_path)
    said: list[str] = []
    results = run_preflight(kube, env, manifests, say=said.append)
    assert [(r.service, r.ok, len(r.objects)) for r in results] == [("gateway", True, 1), ("terms", True, 1)]
    assert {c[2] for c in cluster.calls if c[3] == "All"} == {"dx29-gateway-deployment", "dx29-terms-deployment"}
    assert real_writes(cluster) == [] and len(said) == 2


def test_known_digests_are_used_instead_of_the_placeholder(
    tmp_path: Path, kube: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env, manifests = release(tmp_path)
    digest = "sha256:" + "1" * 64
    seen: list[str] = []
    monkeypatch.setattr(
        preflight_module,
        "diff_objects",
        lambda kube, objs: (
            seen.extend(c["image"] for o in objs for c in o["spec"]["template"]["spec"]["containers"]) or []
        ),
    )
    run_preflight(kube, env, manifests, {"gateway": f"localhost:5000/dx29/gateway@{digest}"})
    assert sorted(seen) == [f"localhost:5000/dx29/gateway@{digest}", f"localhost:5000/dx29/terms@{PLACEHOLDER_DIGEST}"]


def test_a_service_image_written_with_the_environments_registry_is_the_services_own(
    tmp_path: Path, kube: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # localhost:5000/dx29/gateway:1.0 is what the gateway service builds, not an image to resolve.
    env, manifests = release(tmp_path, gateway="localhost:5000/dx29/gateway:1.0")
    digest = "sha256:" + "1" * 64
    seen: list[str] = []
    monkeypatch.setattr(
        preflight_module,
        "diff_objects",
        lambda kube, objs: seen.extend(c["image"] for o in objs for c in o["spec"]["template"]["spec"]["containers"]),
    )

    def resolve(image: str) -> Any:
        raise AssertionError(f"{image} was resolved as an image no service builds")

    results = run_preflight(
        kube,
        env,
        manifests,
        {"gateway": f"localhost:5000/dx29/gateway@{digest}"},
        resolver=type("R", (), {"resolve": staticmethod(resolve)})(),
    )
    assert all(r.ok for r in results), [r.problem for r in results]
    assert f"localhost:5000/dx29/gateway@{digest}" in seen and not any(r.pinned for r in results)


def test_an_image_no_service_builds_refuses_the_whole_release(tmp_path: Path, cluster: FakeCluster, kube: Any) -> None:
    env, manifests = release(tmp_path, terms="dx29/payments")
    with pytest.raises(PreflightFailed) as info:
        run_preflight(kube, env, manifests)
    text = info.value.one_line()
    assert "1 of 2 services' manifests refused" in text and str(manifests / "terms.yaml") in text
    assert "dx29/payments" in text and "gateway.yaml" not in text
    assert real_writes(cluster) == []


def test_every_refusal_by_the_api_server_is_named_with_its_manifest_file(
    tmp_path: Path, cluster: FakeCluster, kube: Any
) -> None:
    cluster.reject = lambda obj: "spec.replicas: Invalid value: -1" if obj["kind"] == "Deployment" else None
    env, manifests = release(tmp_path)
    with pytest.raises(PreflightFailed) as info:
        run_preflight(kube, env, manifests)
    text = info.value.one_line()
    assert "2 of 2 services' manifests refused" in text
    for name in ("gateway", "terms"):
        assert f"{manifests / name}.yaml: " in text and f"Deployment/dx29-{name}-deployment" in text
    assert "server https://127.0.0.1:6443, context deploybook-admin" in text and real_writes(cluster) == []


def test_a_missing_manifest_file_is_named(tmp_path: Path, kube: Any) -> None:
    env, manifests = release(tmp_path)
    (manifests / "terms.yaml").unlink()
    with pytest.raises(PreflightFailed, match=r"terms\.yaml: manifest path does not exist"):
        run_preflight(kube, env, manifests)


class FakeResolver:
    """The resolver's answers for the preflight: image as written -> digest, else not found."""

    def __init__(self, digests: dict[str, str]) -> None:
        self.digests = digests
        self.asked: list[str] = []

    def resolve(self, image: str) -> Any:
        from deploybook.errors import RegistryError
        from deploybook.images.resolve import ResolvedImage, parse_image

        self.asked.append(image)
        if image not in self.digests:
            raise RegistryError(f"manifest {image} not found", source="https://localhost:5000")
        digest, source = self.digests[image], parse_image(image)
        return ResolvedImage(
            image, source.reference, source.registry, digest, f"{source.name}@{digest}", "tag resolved"
        )


SIDECAR = "        - {name: cache, image: 'localhost:5000/vendor/cache:7', resources: {requests: {memory: 4Mi}}}\n"


def test_an_image_no_service_builds_is_pinned_to_its_resolved_digest(
    tmp_path: Path, cluster: FakeCluster, kube: Any
) -> None:
    env, manifests = release(tmp_path)
    gateway = manifests / "gateway.yaml"
    gateway.write_text(gateway.read_text() + SIDECAR)
    digest = "sha256:" + "7" * 64
    resolver = FakeResolver({"localhost:5000/vendor/cache:7": digest})
    said: list[str] = []
    results = run_preflight(kube, env, manifests, resolver=resolver, say=said.append)
    gw = results[0]
    containers = gw.objects[0]["spec"]["template"]["spec"]["containers"]
    assert containers[1]["image"] == f"localhost:5000/vendor/cache@{digest}"
    assert gw.pins == {"localhost:5000/vendor/cache:7": f"localhost:5000/vendor/cache@{digest}"}
    assert gw.pinned[0].to_dict()["container"] == "cache" and gw.pinned[0].manifest == "gateway.yaml"
    assert resolver.asked == ["localhost:5000/vendor/cache:7"]  # service images are not resolved
    assert any("resolving localhost:5000/vendor/cache:7 (container cache)" in line for line in said)


def test_an_image_that_cannot_be_resolved_is_one_error_naming_file_container_and_image(
    tmp_path: Path, cluster: FakeCluster, kube: Any
) -> None:
    env, manifests = release(tmp_path)
    gateway = manifests / "gateway.yaml"
    gateway.write_text(gateway.read_text() + SIDECAR)
    with pytest.raises(PreflightFailed) as info:
        run_preflight(kube, env, manifests, resolver=FakeResolver({}))
    text = info.value.one_line()
    assert "1 of 2 services' manifests refused" in text and str(gateway) in text
    assert "container 'cache' uses image 'localhost:5000/vendor/cache:7'" in text
    assert "manifest localhost:5000/vendor/cache:7 not found" in text and "push the image under that tag" in text
    assert real_writes(cluster) == [] and not [
        c for c in cluster.calls if c[3] == "All" and c[2] == "dx29-gateway-deployment"
    ]


SHARED = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: dx29-settings}\ndata: {level: '1'}\n"


def test_an_object_in_two_services_manifests_refuses_the_release_naming_both(
    tmp_path: Path, cluster: FakeCluster, kube: Any
) -> None:
    env, manifests = release(tmp_path)
    for name in ("gateway", "terms"):
        with (manifests / f"{name}.yaml").open("a") as f:
            f.write(SHARED)
    with pytest.raises(PreflightFailed) as info:
        run_preflight(kube, env, manifests)
    text = info.value.one_line()
    assert "1 of 2 services' manifests refused" in text
    assert f"{manifests / 'terms.yaml'}: ConfigMap/dx29-settings (also in the manifests of gateway)" in text
    assert real_writes(cluster) == []


def test_an_object_twice_in_one_services_manifests_is_refused_with_both_places(tmp_path: Path, kube: Any) -> None:
    env, manifests = release(tmp_path)
    with (manifests / "terms.yaml").open("a") as f:
        f.write(SHARED + SHARED.replace("'1'", "'2'"))
    with pytest.raises(PreflightFailed) as info:
        run_preflight(kube, env, manifests)
    text = info.value.one_line()
    assert "ConfigMap/dx29-settings is in the manifests twice" in text
    assert f"{manifests / 'terms.yaml'}, document 2 (line 13) and here" in text
    assert f"{manifests / 'terms.yaml'}, document 3 (line 18)" in text
