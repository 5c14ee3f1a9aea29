"""Digests: every container (init containers too) runs exactly the digest recorded for its service.

The recorded digest comes from this run, `--release FILE`, or the release record in the
cluster. The registry must still serve that digest, and the release's tag must point at it.
A container of an image no service builds (a sidecar) must run the digest the release pinned
it to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import allure
import pytest

from deploybook.config.model import Service
from deploybook.plugin.fixtures import RunView

if TYPE_CHECKING:  # a type only: importing it at collection would load the Docker and Kubernetes clients
    from deploybook.release.check_reports import DigestsReport

pytestmark = pytest.mark.check("digests")


def test_running_digest_is_recorded_digest(service: Service, release: RunView, status: Callable[..., None]) -> None:
    """Compare each container's imageID digest with the release's, and ask the registry."""
    report: DigestsReport = release.wait(service, "digests")
    released, _ = release.released
    running = sorted({c.digest or "none" for c in report.running})
    commit = release.source_commit(service)[:12]
    status(recorded=report.expected or "", running=",".join(running), released=released, commit=commit)
    allure.attach(
        "\n".join(
            f"{c.pod}/{c.container}: {c.image_id or '(not pulled)'}" for c in report.running + report.third_party
        ),
        "running imageIDs",
        allure.attachment_type.TEXT,
    )
    namespace = release.context.env.cluster.namespace
    assert report.expected, (
        f"no digest recorded for {service.name}: no release record in namespace {namespace} "
        "and none given with --release FILE"
    )
    assert report.running, f"no running container of {service.name} found"
    assert not report.mismatches, f"image digest mismatch (recorded digest from {report.source}):\n" + "\n".join(
        [*map(str, report.mismatches), *filter(None, [report.note])]
    )
    assert report.registry_problem is None, report.registry_problem
