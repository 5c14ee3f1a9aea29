"""Stage 3, apply: render each service's manifests with its digest and apply them.

Why: what runs must be exactly what was pushed and reviewed. Manifests come from this
repository (local, dev) or from an environment repository at a pinned ref (test, prod),
and the commit used is recorded. Rendering pins every image to ``repo@sha256:...``, sets
the namespace, the environment label, the release id and git sha annotations and the
image-pull secret. Every object was already validated by a server-side dry-run in the
preflight, before anything was built; here it is server-side applied with field manager
``deploybook``, and the diff of the live object against what the server stored is kept,
with the exact YAML applied, as evidence.

The release-id annotation names the release that introduced what runs: an unchanged
service keeps the id it had, so applying the same release again changes nothing.
``--dry-run`` stops at the server-side dry-run and its diff.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.stages import Applied

pytestmark = pytest.mark.stage("apply")


def test_apply_manifests(service: Service, release: RunView) -> None:
    """Render with the pinned digests and server-side apply (or dry-run); keep YAML and diff."""
    applied: Applied = release.wait(service, "apply")
    allure.attach(json.dumps(release.manifest_source, indent=2), "manifest source", allure.attachment_type.JSON)
    allure.attach(applied.rendered, f"{applied.manifest} rendered", allure.attachment_type.YAML)
    verb = "would be" if applied.dry_run else "applied"
    summary = "\n".join(f"{o.kind}/{o.name}: {o.action}" for o in applied.objects)
    diffs = "\n".join(o.diff for o in applied.objects if o.diff)
    allure.attach(f"{summary}\n\n{diffs}", f"diff against the live objects ({verb})", allure.attachment_type.TEXT)
    assert applied.objects, f"{applied.manifest} rendered no object"
    assert all(o.action in ("created", "configured", "replaced", "unchanged") for o in applied.objects)
