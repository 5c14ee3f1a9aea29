"""Stage 1, build: one image per service, from its build context and Dockerfile.

Why: the image is the unit that moves through the environments, so it must say where it
came from. Every image carries the OCI labels revision (the commit), source (the
repository), version (the release tag) and created (the commit time, not the wall clock,
so rebuilding an unchanged commit gives the same image and a rerun is a no-op). A service's
prepare command runs first when it has one (it fills the build context with what git does
not hold). The build log is kept as evidence. A service whose build fails is skipped in the
later stages; the other services go on.

Production builds nothing: it promotes the digests that passed on test.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.stages import Built

pytestmark = pytest.mark.stage("build")


def test_build_image(service: Service, release: RunView) -> None:
    """docker build the service's context with the release's OCI labels; keep the log."""
    built: Built = release.wait(service, "build")
    if built.prepare:
        allure.attach(built.prepare, "prepare output", allure.attachment_type.TEXT)
    allure.attach(json.dumps(dict(built.labels), indent=2), "OCI labels", allure.attachment_type.JSON)
    allure.attach(built.log, built.command, allure.attachment_type.TEXT)
    assert built.image_id.startswith("sha256:"), f"unexpected image id {built.image_id!r}"
