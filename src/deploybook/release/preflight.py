"""The preflight: every service's manifests rendered and server-side dry-run before anything runs.

A release must never be half-applied because one service's manifest is bad (it names an
image no service builds, it does not parse, the API server rejects it). So right after the
lock is taken and before any image is built, the controller renders every service's
manifests and asks the API server to dry-run all of them (``dryRun=All``: validated,
defaulted, admitted, never stored). Images not pushed yet are pinned to a placeholder
digest: the digest is the one thing the apply stage renders differently, and the API
server does not look inside it. Every problem found is reported in one
:class:`~deploybook.errors.PreflightFailed` naming each manifest file; then nothing was
built or applied, the lock is given back and the release record in the cluster is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploybook.errors import DeploybookError, PreflightFailed

if TYPE_CHECKING:
    from deploybook.cluster.connect import KubeClients
    from deploybook.config.environment import Environment, Service
    from deploybook.release.state import RunState

__all__ = ["PLACEHOLDER_DIGEST", "ServicePreflight", "manifest_directory", "preflight_release"]

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
"""Stands for a digest not known yet (the image is built and pushed later in the run)."""


@dataclass(frozen=True)
class ServicePreflight:
    """One service's manifests as the preflight rendered them, and how the server took them."""

    service: str
    manifest: Path
    objects: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        """True when the manifests rendered and the API server accepted every object."""
        return not self.problem


def manifest_directory(environment: Environment, run_dir: Path) -> Path:
    """Where the environment's manifests are: its path, or its git repository fetched at the ref."""
    source = environment.manifests
    if source.git is None:
        assert source.path is not None
        return source.path
    from deploybook.sources.git import fetch_ref

    checkout = run_dir / "manifest-source" / "preflight"
    fetch_ref(source.git.url, source.git.ref, checkout)
    return checkout / source.git.path


def preflight_release(
    kube: KubeClients,
    state: RunState,
    manifest_dir: Path,
    *,
    pull_secret: str | None,
    say: Callable[[str], None] | None = None,
) -> list[ServicePreflight]:
    """Render and dry-run every service; raise PreflightFailed naming every bad manifest."""
    env = state.env
    refs = {
        s.image: state.expected_ref(s.name) or f"{env.image_repository(s)}@{PLACEHOLDER_DIGEST}" for s in env.services
    }
    results = [_check_service(kube, state, s, manifest_dir, refs, pull_secret) for s in env.services]
    for result in results:
        if say is not None:
            noun = "object" if result.objects == 1 else "objects"
            verdict = f"{result.objects} {noun} accepted (server-side dry-run)" if result.ok else "REFUSED"
            say(f"preflight {result.service}: {result.manifest.name}: {verdict}")
    bad = [r for r in results if not r.ok]
    if bad:
        raise PreflightFailed(
            f"{len(bad)} of {len(results)} services' manifests refused, so no service is released: "
            + "; ".join(r.problem for r in bad),
            hint="fix the manifest and run the release again; nothing was built or applied",
        )
    return results


def _check_service(
    kube: KubeClients,
    state: RunState,
    service: Service,
    manifest_dir: Path,
    refs: dict[str, str],
    pull_secret: str | None,
) -> ServicePreflight:
    from deploybook.manifests.apply import diff_objects
    from deploybook.manifests.render import load_manifests
    from deploybook.release.rollback import render_service

    path = manifest_dir / service.manifest
    try:
        manifests = load_manifests(path)
        objs = render_service(
            service,
            state.env,
            manifests,
            refs=refs,
            pull_secret=pull_secret,
            release_id=state.run_id,
            git_sha=_git_sha(state),
        )
        diff_objects(kube, objs)
    except DeploybookError as e:
        return ServicePreflight(service.name, path, problem=_located(e, path))
    return ServicePreflight(service.name, path, objects=len(objs))


def _located(error: DeploybookError, path: Path) -> str:
    """The error's text, with the manifest file named when the error itself does not name it."""
    text = f"{error.source}: {error.message}" if error.source else error.message
    text = " ".join(text.split())
    return text if str(path) in text else f"{path}: {text}"


def _git_sha(state: RunState) -> str:
    """The commit the images are built from (for a promotion: the promoted release's)."""
    if state.env.promote_from and state.source_record is not None:
        return str(state.source_record.git.get("commit", ""))
    return state.git.commit if state.git else ""
