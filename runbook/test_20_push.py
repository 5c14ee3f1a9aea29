"""Stage 2, push: each built image goes to the environment's registry.

Why: the cluster pulls from the registry, and what it pulls must be exactly what was
built. The digest comes from the push and is confirmed independently by asking the
registry's v2 API for the tag; from here on every service is referred to only as
``repository@sha256:...``, never by a tag that could move.

Production pushes nothing: it checks that the registry still serves each promoted digest.
A dry run pushes nothing either: it reads the digest the registry already has for this
release's tag, or the one recorded in the cluster, so the apply stage can render and diff.
"""

from __future__ import annotations

import allure
import pytest

from deploybook.config.environment import Environment, Service
from deploybook.errors import RegistryError
from deploybook.images.build import push_image, split_repository
from deploybook.images.registry import RegistryAuth, RegistryClient
from deploybook.plugin.fixtures import Progress
from deploybook.release.state import RunState

pytestmark = pytest.mark.stage("push")


def test_push_image(
    service: Service,
    environment: Environment,
    release: RunState,
    docker_client: object,
    registry: RegistryClient,
    registry_auth: RegistryAuth | None,
    progress: Progress,
) -> None:
    """docker push the release tag; the registry's own answer must give the same digest."""
    if environment.promote_from:
        _confirm_promoted(service, release, registry, progress)
        return
    if release.dry_run:
        _digest_without_push(service, environment, release, registry, progress)
        return
    built = release.result(service.name)
    assert built.image and built.tag, f"{service.name} has no built image to push"
    with allure.step(f"docker push {built.image}:{built.tag}"):
        pushed = push_image(
            docker_client,
            repository=built.image,
            tag=built.tag,
            auth=registry_auth,
            on_line=progress,
            source=built.image_id,
            registry=registry,
        )
        allure.attach(pushed.log, "push log", allure.attachment_type.TEXT)
    with allure.step(f"registry v2: HEAD /v2/{split_repository(built.image)[1]}/manifests/{built.tag}"):
        confirmed = registry.manifest_digest(split_repository(built.image)[1], built.tag)
        allure.attach(confirmed, "digest from the registry", allure.attachment_type.TEXT)
    assert confirmed == pushed.digest, f"push said {pushed.digest}, registry says {confirmed}"
    release.record_service(service.name, digest=pushed.digest, digest_source="push")
    progress(f"pushed {pushed.ref}")


def _confirm_promoted(service: Service, release: RunState, registry: RegistryClient, progress: Progress) -> None:
    result = release.result(service.name)
    assert result.image and result.digest, f"no promoted digest for {service.name}"
    path = split_repository(result.image)[1]
    with allure.step(f"registry v2: HEAD /v2/{path}/manifests/{result.digest}"):
        served = registry.manifest_digest(path, result.digest)
    assert served == result.digest, f"registry serves {served} for {result.digest}"
    release.record_service(service.name, digest_source="promoted")
    progress(f"promoting {result.ref}")


def _digest_without_push(
    service: Service, environment: Environment, release: RunState, registry: RegistryClient, progress: Progress
) -> None:
    repository = environment.image_repository(service)
    path = split_repository(repository)[1]
    try:
        digest, source = registry.manifest_digest(path, release.tag), "registry tag"
    except RegistryError:
        digest, source = release.expected_digest(service.name), "recorded release"
    if not digest:
        pytest.skip(
            f"dry-run: {repository}:{release.tag} is not in the registry and no release records "
            f"{service.name}; nothing to render"
        )
    allure.attach(f"{repository}@{digest} (from the {source})", "digest (dry-run)", allure.attachment_type.TEXT)
    release.record_service(service.name, image=repository, tag=release.tag, digest=digest, digest_source=source)
    progress(f"dry-run: would deploy {repository}@{digest} (from the {source})")
