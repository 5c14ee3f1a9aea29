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
import subprocess

import allure
import pytest

from deploybook.config.environment import Environment, Service
from deploybook.errors import BuildError
from deploybook.images.build import build_image, oci_labels
from deploybook.plugin.fixtures import Progress
from deploybook.release.state import RunState
from deploybook.sources.git import source_url

pytestmark = pytest.mark.stage("build")


def test_build_image(
    service: Service, environment: Environment, release: RunState, docker_client: object, progress: Progress
) -> None:
    """docker build the service's context with the release's OCI labels; keep the log."""
    if environment.promote_from:
        pytest.skip(f"{environment.name} is deploy-only: it promotes the digests of {environment.promote_from}")
    assert release.git is not None, "the release has no git state"
    if service.prepare:
        prepare_context(service, environment)
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
            docker_client,
            context=service.context,
            dockerfile=service.dockerfile,
            tag=tag,
            labels=labels,
            on_line=progress,
        )
        allure.attach(result.log, "build log", allure.attachment_type.TEXT)
    progress(f"built {tag} ({result.image_id[:19]})")
    release.record_service(service.name, image=repository, tag=release.tag, image_id=result.image_id)
    assert result.image_id.startswith("sha256:"), f"unexpected image id {result.image_id!r}"


def prepare_context(service: Service, environment: Environment) -> None:
    """Runs the service's prepare command (it fills the build context with what git does not
    hold, such as a static binary) in the repository root; its output is evidence."""
    command = " ".join(service.prepare)
    with allure.step(command):
        try:
            done = subprocess.run(
                service.prepare,
                cwd=environment.root,
                capture_output=True,
                text=True,
                timeout=environment.timeouts.build,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BuildError(
                f"prepare command {command!r} could not run: {e}",
                stage="build",
                service=service.name,
                source=str(environment.file),
            ) from e
        allure.attach(done.stdout + done.stderr, "prepare output", allure.attachment_type.TEXT)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-10:])
        raise BuildError(
            f"prepare command {command!r} exited {done.returncode}:\n{tail}",
            stage="build",
            service=service.name,
            source=str(environment.file),
            hint="run it by hand from the repository root and fix what it reports",
        )
