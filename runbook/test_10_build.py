"""Stage 1, build: one image per service, from its build context and Dockerfile.

Why: the image is the unit that moves through the environments, so it must say where it
came from. Every image carries the OCI labels revision (the commit), source (the
repository), version (the release tag) and created (the commit time, not the wall clock,
so rebuilding an unchanged commit gives the same image and a rerun is a no-op). The build
log is kept as evidence. A service whose build fails is skipped in the later stages; the
other services go on.

Production builds nothing: it promotes the digests that passed on test.
"""

from __future__ import annotations

import json

import allure
import pytest

from deploybook.config import Environment, Service
from deploybook.fixtures import Progress
from deploybook.gitinfo import source_url
from deploybook.images import build_image, oci_labels
from deploybook.run import RunState

pytestmark = pytest.mark.stage("build")


def test_build_image(
    service: Service, environment: Environment, release: RunState, docker_client: object, progress: Progress
) -> None:
    """docker build the service's context with the release's OCI labels; keep the log."""
    if environment.promote_from:
        pytest.skip(f"{environment.name} is deploy-only: it promotes the digests of {environment.promote_from}")
    assert release.git is not None, "the release has no git state"
    repository = environment.image_repository(service)
    tag = f"{repository}:{release.tag}"
    labels = oci_labels(
        revision=release.git.commit,
        source=source_url(environment.root),
        version=release.tag,
        created=release.git.commit_time,
    )
    allure.attach(json.dumps(labels, indent=2), "OCI labels", allure.attachment_type.JSON)
    command = f"docker build {service.context} -f {service.dockerfile} -t {tag}"
    with allure.step(command):
        result = build_image(
            docker_client, context=service.context, dockerfile=service.dockerfile, tag=tag,
            labels=labels, on_line=progress,
        )
        allure.attach(result.log, "build log", allure.attachment_type.TEXT)
    progress(f"built {tag} ({result.image_id[:19]})")
    release.record_service(service.name, image=repository, tag=release.tag, image_id=result.image_id)
    assert result.image_id.startswith("sha256:"), f"unexpected image id {result.image_id!r}"
