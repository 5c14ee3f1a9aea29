"""Stage 3, apply: render each service's manifests with its digest and apply them.

Why: what runs must be exactly what was pushed and reviewed. Manifests come from this
repository (local, dev) or from an environment repository at a pinned ref (test, prod),
and the commit used is recorded. Rendering pins every image to ``repo@sha256:...``, sets
the namespace, the environment label, the release id and git sha annotations and the
image-pull secret. The diff against the live objects is shown before a server-side apply
with field manager ``deploybook``; the exact YAML applied is kept as evidence.

The release-id annotation names the release that introduced what runs: an unchanged
service keeps the id it had, so applying the same release again changes nothing.
``--dry-run`` stops at the server-side dry-run and the diff.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import allure
import pytest

from deploybook.config.environment import Environment, Service
from deploybook.errors import RecordError
from deploybook.evidence.record import ReleaseRecord, load_from_cluster
from deploybook.images.registry import RegistryAuth
from deploybook.manifests.apply import apply_objects, diff_objects, ensure_namespace, ensure_pull_secret
from deploybook.manifests.render import load_manifests
from deploybook.plugin.fixtures import Progress
from deploybook.release.rollback import render_service, rendered_text
from deploybook.release.state import RunState
from deploybook.sources.git import fetch_ref

pytestmark = pytest.mark.stage("apply")


@pytest.fixture(scope="module")
def manifest_dir(environment: Environment, release: RunState) -> Path:
    """The directory holding the environment's manifests, fetched at its ref when in git."""
    source = environment.manifests
    if source.git is None:
        assert source.path is not None
        commit = release.git.commit if release.git else None
        info: dict[str, Any] = {
            "kind": "path",
            "path": str(source.path.relative_to(environment.root)),
            "commit": commit,
            "dirty": bool(release.git and release.git.dirty),
        }
        path = source.path
    else:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        checkout = release.run_dir / "manifest-source" / worker
        with allure.step(f"git fetch {source.git.url} {source.git.ref}"):
            commit = fetch_ref(source.git.url, source.git.ref, checkout)
        info = {"kind": "git", "url": source.git.url, "ref": source.git.ref, "path": source.git.path, "commit": commit}
        path = checkout / source.git.path
    allure.attach(json.dumps(info, indent=2), "manifest source", allure.attachment_type.JSON)
    release.write_extra("_manifests", info)
    return path


@pytest.fixture(scope="module")
def namespace_ready(
    kube: Any, environment: Environment, release: RunState, registry_auth: RegistryAuth | None
) -> str | None:
    """The namespace exists and holds the image-pull secret; returns the secret's name."""
    namespace = environment.cluster.namespace
    with allure.step(f"namespace {namespace}"):
        ensure_namespace(kube, namespace, dry_run=release.dry_run)
    if not environment.pull_secret or registry_auth is None:
        return None
    with allure.step(f"image-pull secret {namespace}/{environment.pull_secret} for {environment.registry.address}"):
        ensure_pull_secret(
            kube,
            namespace,
            environment.pull_secret,
            environment.registry.address,
            registry_auth,
            dry_run=release.dry_run,
        )
    return environment.pull_secret


@pytest.fixture(scope="module")
def previous_release(kube: Any, environment: Environment) -> ReleaseRecord | None:
    """The release recorded in the cluster before this one (None on a first release)."""
    try:
        return load_from_cluster(kube, environment.cluster.namespace)
    except RecordError as e:
        allure.attach(e.one_line(), "previous release record unreadable", allure.attachment_type.TEXT)
        return None


def test_apply_manifests(
    service: Service,
    environment: Environment,
    release: RunState,
    kube: Any,
    manifest_dir: Path,
    namespace_ready: str | None,
    previous_release: ReleaseRecord | None,
    progress: Progress,
) -> None:
    """Render with the pinned digest, show the diff, server-side apply (or dry-run)."""
    ref = release.expected_ref(service.name)
    assert ref, f"{service.name} has no pushed digest to deploy"
    manifests = load_manifests(manifest_dir / service.manifest)
    release_id, objs, text = _render_keeping_release_id(
        service, environment, release, manifests, namespace_ready, previous_release
    )
    allure.attach(text, f"{service.manifest} rendered", allure.attachment_type.YAML)
    with allure.step("diff against the live objects (server-side dry-run)"):
        diffs = diff_objects(kube, objs)
        summary = "\n".join(f"{d.kind}/{d.name}: {d.action}" for d in diffs)
        allure.attach(
            summary + "\n\n" + "\n".join(d.diff for d in diffs if d.diff), "diff", allure.attachment_type.TEXT
        )
    for d in diffs:
        progress(f"{d.kind}/{d.name}: {d.action}")
    verb = "server-side dry-run" if release.dry_run else "server-side apply"
    with allure.step(f"{verb} --field-manager=deploybook ({len(objs)} objects)"):
        applied = apply_objects(kube, objs, dry_run=release.dry_run)
        allure.attach(
            "\n".join(f"{a.kind}/{a.name}: {a.action}" for a in applied), "applied", allure.attachment_type.TEXT
        )
    release.record_service(
        service.name,
        deployed_by=release_id,
        manifests={service.manifest: hashlib.sha256(text.encode()).hexdigest()},
    )
    assert len(applied) == len(objs), f"{len(objs)} objects rendered, {len(applied)} applied"


def _render_keeping_release_id(
    service: Service,
    environment: Environment,
    release: RunState,
    manifests: list[Any],
    pull_secret: str | None,
    previous: ReleaseRecord | None,
) -> tuple[str, list[dict[str, Any]], str]:
    """Render with the previous release id when that gives the very same objects, else this run's."""
    before = previous.services.get(service.name) if previous else None
    candidates = [release.run_id]
    if before and before.deployed_by and before.digest == release.expected_digest(service.name):
        candidates.insert(0, before.deployed_by)
    for release_id in candidates:
        objs = _render(service, environment, release, manifests, pull_secret, release_id)
        text = rendered_text(objs)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if release_id == release.run_id or (before and before.manifests.get(service.manifest) == digest):
            return release_id, objs, text
    raise AssertionError("unreachable: the run id is always a candidate")


def _render(
    service: Service,
    environment: Environment,
    release: RunState,
    manifests: list[Any],
    pull_secret: str | None,
    release_id: str,
) -> list[dict[str, Any]]:
    refs = {s.image: ref for s in environment.services if (ref := release.expected_ref(s.name))}
    return render_service(
        service,
        environment,
        manifests,
        refs=refs,
        pull_secret=pull_secret,
        release_id=release_id,
        git_sha=_git_sha(release),
    )


def _git_sha(release: RunState) -> str:
    """The commit the images were built from (for a promotion: the promoted release's)."""
    if release.env.promote_from and release.source_record is not None:
        return str(release.source_record.git.get("commit", ""))
    return release.git.commit if release.git else ""
