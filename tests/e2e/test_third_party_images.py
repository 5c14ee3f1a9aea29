"""Images no service builds, on the real stack: a sidecar of a vendor image pinned to its digest.

A tiny vendor image (the host's static busybox, run as a non-root user) is pushed to the
stack's registry under a tag; a throwaway environment's gateway manifest (a copy of the sample
app's, see conftest.py) runs it as a sidecar, written by that tag. The release resolves the
tag to the registry's digest before anything is applied, records where it came from, and the
pods run ``...@sha256:``; the digest check compares the running sidecar with that digest, in
the release and in checks alone (from the record in the cluster). A tag
the registry does not have is one error before any apply, and the namespace gets no object of
the release's manifests.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Release = Any  # tests/e2e/conftest.py: Release, ThrowawayEnvironment
ThrowawayEnvironment = Any

DOCKERFILE = """\
FROM scratch
COPY busybox /bin/busybox
USER 10001:10001
ENTRYPOINT ["/bin/busybox"]
CMD ["sleep", "3600"]
"""


@pytest.fixture(scope="module")
def vendor_image(
    cluster_ready: dict[str, str], registry_auth: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """``(repository:tag, digest)`` of a vendor image pushed to the stack's registry by tag."""
    import docker

    from deploybook.images.build import build_image
    from deploybook.images.push import push_image

    context = tmp_path_factory.mktemp("vendor")
    shutil.copy("/bin/busybox", context / "busybox")
    (context / "Dockerfile").write_text(DOCKERFILE)
    repository = f"{cluster_ready['DEPLOYBOOK_REGISTRY']}/e2e-vendor/sidecar-{uuid.uuid4().hex[:8]}"
    client = docker.DockerClient(base_url=cluster_ready["DOCKER_HOST"])
    try:
        built = build_image(client, context=context, dockerfile="Dockerfile", tag=f"{repository}:1.0", labels={})
        pushed = push_image(
            client,
            repository=repository,
            tag="1.0",
            auth=registry_auth,
            source=built.image_id,
            ca_file=cluster_ready["DEPLOYBOOK_REGISTRY_CA"],
        )
    finally:
        client.close()
    return f"{repository}:1.0", pushed.digest


def with_sidecar(image: str) -> Callable[[str, str], str]:
    """An edit of the copied manifests: the gateway runs a sidecar of ``image``."""
    sidecar = (
        "        - name: sidecar\n"
        f"          image: {image}\n"
        "          resources: {requests: {cpu: 1m, memory: 4Mi}, limits: {memory: 16Mi}}\n"
    )

    def edit(name: str, text: str) -> str:
        if name != "gateway.yaml":
            return text
        return text.replace("      containers:\n", "      containers:\n" + sidecar, 1)

    return edit


def pods_of(admin: Any, namespace: str) -> list[Any]:
    return list(admin.core.list_namespaced_pod(namespace).items)


def test_a_sidecar_written_by_tag_runs_pinned_to_the_registry_digest(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    vendor_image: tuple[str, str],
    admin: Any,
    stack_kit: Any,
    tmp_path: Path,
) -> None:
    image, digest = vendor_image
    env = throwaway_environment(services=("gateway",), edit=with_sidecar(image))
    run = release_runner("runbook", "--env", env.name)
    code = run.wait(600)
    out = run.output
    assert code == 0, out[-4000:]
    assert f"resolving {image} (container sidecar)" in out, out[-4000:]
    record = stack_kit.records_of(tmp_path / "reports", env.name)[-1]
    (entry,) = record["services"]["gateway"]["third_party"]
    repository = image.rsplit(":", 1)[0]
    assert entry == {
        "manifest": "gateway.yaml",
        "container": "sidecar",
        "written": image,
        "reference": image,
        "registry": repository.split("/", 1)[0],
        "digest": digest,
        "pinned": f"{repository}@{digest}",
        "how": "tag resolved",
    }
    running = [
        (c.image, status.image_id)
        for pod in pods_of(admin, env.namespace)
        if pod.metadata.deletion_timestamp is None
        for c in pod.spec.containers
        for status in pod.status.container_statuses or ()
        if c.name == status.name == "sidecar"
    ]
    assert running, f"no sidecar container in {env.namespace}"
    for spec_image, image_id in running:
        assert spec_image == f"{repository}@{digest}" and image_id.endswith(f"@{digest}"), running
    digests_check = next((ln for ln in out.splitlines() if "container(s) of images no service builds" in ln), "")
    assert "no mismatch(es)" in digests_check, out[-4000:]
    # Checks alone know the sidecar's digest from the record in the cluster.
    checks = release_runner("checks", "--env", env.name, "-k", "digest")
    assert checks.wait(300) == 0, checks.output[-4000:]
    assert "1 container(s) of images no service builds: no mismatch(es)" in checks.output, checks.output[-4000:]


def test_a_tag_the_registry_lacks_is_one_error_before_any_apply(
    throwaway_environment: Callable[..., ThrowawayEnvironment],
    release_runner: Callable[..., Release],
    vendor_image: tuple[str, str],
    admin: Any,
) -> None:
    missing = vendor_image[0].rsplit(":", 1)[0] + ":no-such-tag"
    env = throwaway_environment(services=("gateway",), edit=with_sidecar(missing))
    run = release_runner("runbook", "--env", env.name)
    code = run.wait(600)
    out = run.output
    assert code != 0, out[-4000:]
    refusals = [ln for ln in out.splitlines() if "cannot be pinned to a digest" in ln]
    assert refusals, out[-4000:]
    line = refusals[0]
    assert f"{env.manifests}/gateway.yaml" in line and "container 'sidecar'" in line and repr(missing) in line, line
    assert "not found" in line and "push the image under that tag" in line, line
    assert "nothing was built or applied" in out, out[-4000:]
    assert admin.apps.list_namespaced_deployment(env.namespace).items == []
    assert admin.core.list_namespaced_service(env.namespace).items == []
    assert pods_of(admin, env.namespace) == []
    config_maps = [c.metadata.name for c in admin.core.list_namespaced_config_map(env.namespace).items]
    assert "deploybook-release" not in config_maps, config_maps
