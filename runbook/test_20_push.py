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

from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.stages import Pushed

pytestmark = pytest.mark.stage("push")


def test_push_image(service: Service, release: RunView) -> None:
    """docker push the release tag; the registry's own answer must give the same digest."""
    pushed: Pushed = release.wait(service, "push")
    if pushed.log:
        allure.attach(pushed.log, "push log", allure.attachment_type.TEXT)
    allure.attach(f"{pushed.ref} (from the {pushed.source})", "digest", allure.attachment_type.TEXT)
    if pushed.question:
        allure.attach(f"{pushed.question}\n{pushed.answer}", "asked of the registry", allure.attachment_type.TEXT)
        assert pushed.answer == pushed.digest, f"{pushed.source} says {pushed.digest}, the registry {pushed.answer}"
