"""Digests: every running container runs exactly the digest recorded for its service.

The recorded digest comes from this run, `--release FILE`, or the release record in the
cluster. The registry must still serve that digest, and the release's tag must point at it.
"""

from __future__ import annotations

from typing import Any

import allure
import pytest

from deploybook.plugin.status_table import note_status
from deploybook.verify.digests import (
    containers_in,
    digest_mismatches,
    registry_problem,
    repository_path,
)


def test_running_digest_is_recorded_digest(
    request: pytest.FixtureRequest,
    service: Any,
    environment: Any,
    snapshot: Any,
    registry_answers: Any,
    deployed: dict[str, list[Any]],
    recorded: dict[str, Any],
) -> None:
    """Compare each container's imageID digest with the release's, and ask the registry."""
    result, source = recorded["expected"](service.name)
    expected = getattr(result, "digest", None)
    note_status(
        request.node,
        service.name,
        recorded=expected or "",
        released=recorded["released"],
        commit=recorded["commit"],
    )
    assert expected, (
        f"no digest recorded for {service.name}: no release record in namespace "
        f"{environment.cluster.namespace} and none given with --release FILE"
    )
    running = [
        c for wl in deployed[service.name] for c in containers_in(wl.pods(snapshot), image_repository=service.image)
    ]
    allure.attach(
        "\n".join(f"{c.pod}/{c.container}: {c.image_id or '(not pulled)'}" for c in running),
        "running imageIDs",
        allure.attachment_type.TEXT,
    )
    digests = sorted({c.digest or "none" for c in running})
    note_status(request.node, service.name, running=",".join(digests) or "")
    assert running, f"no running container of {service.name} found"
    mismatches = digest_mismatches(running, expected)
    assert not mismatches, f"image digest mismatch (recorded digest from {source}):\n" + "\n".join(map(str, mismatches))
    repo = repository_path(running[0].image, registry_answers.address)
    problem = registry_problem(registry_answers, repo, expected, getattr(result, "tag", None))
    assert problem is None, problem
