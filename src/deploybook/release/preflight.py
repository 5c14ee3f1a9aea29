"""The preflight: every service's manifests rendered and server-side dry-run before anything runs.

A release must never be half-applied because one service's manifest is bad (it names an
image that cannot be pinned, it does not parse, the API server rejects it). So right after the
lock is taken and before any image is built, every service's manifests are rendered and the
API server is asked to dry-run all of them (``dryRun=All``: validated, defaulted, admitted,
never stored). This is the one dry-run each object gets in a release: the apply stage then
applies for real. Images not pushed yet are pinned to a placeholder digest: the digest is
the one thing the apply stage renders differently, and the API server does not look inside
it. An image no service builds (a sidecar, a vendor image) is resolved here to the digest its
registry serves (``deploybook.images.resolve``), so one that cannot be resolved stops the
release before anything is applied, naming the manifest, the container and the image; the
pinned references are kept for the apply stage and the record. Every problem found is
reported in one :class:`~deploybook.errors.PreflightFailed` naming each manifest file; then
nothing was built or applied, the lock is given back and the release record in the cluster is untouched.

A ``--dry-run`` release renders here without asking the server: its apply stage is the
server-side dry-run, and the one it makes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploybook.cluster.connect import KubeClients
from deploybook.config.model import Environment, Service
from deploybook.errors import DeploybookError, PolicyError, PreflightFailed, RenderError
from deploybook.images.resolve import ResolvedImage, Resolver
from deploybook.manifests.apply import diff_objects
from deploybook.manifests.load import Manifest, load_manifests
from deploybook.manifests.policies import manifest_policy_problems
from deploybook.manifests.render import render_service, unbuilt_images

__all__ = [
    "PLACEHOLDER_DIGEST",
    "ManifestRules",
    "PinnedImage",
    "ServicePreflight",
    "placeholder_refs",
    "preflight_release",
]

ManifestRules = Callable[[Service, list[dict[str, Any]]], list[str]]
"""A team's own pre-apply policies (the ``pytest_deploybook_check_manifests`` hook): problems."""

PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
"""Stands for a digest not known yet (the image is built and pushed later in the run)."""


@dataclass(frozen=True)
class PinnedImage:
    """One container's image that no service builds, and the digest it was pinned to."""

    manifest: str
    container: str
    image: ResolvedImage

    def to_dict(self) -> dict[str, str]:
        """The JSON form the release record keeps per service."""
        return {"manifest": self.manifest, "container": self.container, **self.image.to_dict()}


@dataclass(frozen=True)
class ServicePreflight:
    """One service's manifests as the preflight rendered them, and how the server took them."""

    service: str
    manifest: Path
    objects: tuple[dict[str, Any], ...] = field(default=(), repr=False)
    problem: str = ""
    pinned: tuple[PinnedImage, ...] = ()

    @property
    def pins(self) -> dict[str, str]:
        """Image as written -> pinned reference, for the images no service builds."""
        return {p.image.written: p.image.pinned for p in self.pinned}

    @property
    def ok(self) -> bool:
        """True when the manifests rendered and the API server accepted every object."""
        return not self.problem

    @property
    def kinds(self) -> set[str]:
        """The kinds of the rendered objects."""
        return {str(o.get("kind")) for o in self.objects}


def placeholder_refs(env: Environment, known: Mapping[str, str | None]) -> dict[str, str]:
    """Service image -> pinned ref: ``known`` (service name -> ref) where given, else a placeholder."""
    return {s.image: known.get(s.name) or f"{env.image_repository(s)}@{PLACEHOLDER_DIGEST}" for s in env.services}


def preflight_release(
    kube: KubeClients | None,
    env: Environment,
    manifest_dir: Path,
    *,
    refs: Mapping[str, str],
    pull_secret: str | None,
    release_id: str,
    git_sha: str,
    say: Callable[[str], None] | None = None,
    resolver: Resolver | None = None,
    rules: ManifestRules | None = None,
) -> list[ServicePreflight]:
    """Render every service (and dry-run it when ``kube`` is given); raise PreflightFailed
    naming every bad manifest. Services are checked side by side. With ``resolver``, images no
    service builds are pinned to their registry's digest; without one, they are refused. The
    pre-apply policies (resources requested, no latest tag) and a team's ``rules`` are judged
    here too, before anything is applied."""

    def check(service: Service) -> ServicePreflight:
        return _check_service(kube, env, service, manifest_dir, refs, pull_secret, release_id, git_sha, resolver, rules)

    with ThreadPoolExecutor(max_workers=min(8, len(env.services)) or 1) as pool:
        results = _one_owner_each(list(pool.map(check, env.services)))
    for result in results:
        if say is not None:
            for p in result.pinned:
                say(
                    f"preflight {result.service}: resolving {p.image.written} (container {p.container}): "
                    f"{p.image.pinned} ({p.image.how} at {p.image.registry})"
                )
            say(f"preflight {result.service}: {result.manifest.name}: {_verdict(result, dry_run=kube is not None)}")
    _raise_for(results)
    return results


def _one_owner_each(results: list[ServicePreflight]) -> list[ServicePreflight]:
    """The results, with a problem for each service whose manifests hold an object that an
    earlier service's hold too: each release of one would overwrite the other's, and which
    record and rollback own it could not be said."""
    owner: dict[tuple[str, str, str], str] = {}
    checked = []
    for result in results:
        shared = []
        for obj in result.objects:
            meta = obj.get("metadata") or {}
            key = (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
            first = owner.setdefault(key, result.service)
            if first != result.service:
                shared.append(f"{key[0]}/{key[2]} (also in the manifests of {first})")
        if shared and result.ok:
            result = dataclasses.replace(
                result,
                problem=f"{result.manifest}: {', '.join(shared)}: an object belongs to one service's manifests; "
                "keep it in one (the other service's pods may use it all the same)",
            )
        checked.append(result)
    return checked


def _verdict(result: ServicePreflight, *, dry_run: bool) -> str:
    if not result.ok:
        return "REFUSED"
    noun = "object" if len(result.objects) == 1 else "objects"
    how = "accepted (server-side dry-run)" if dry_run else "rendered"
    return f"{len(result.objects)} {noun} {how}"


def _raise_for(results: Sequence[ServicePreflight]) -> None:
    bad = [r for r in results if not r.ok]
    if bad:
        raise PreflightFailed(
            f"{len(bad)} of {len(results)} services' manifests refused, so no service is released: "
            + "; ".join(r.problem for r in bad),
            hint="fix the manifest and run the release again; nothing was built or applied",
        )


def _check_service(
    kube: KubeClients | None,
    env: Environment,
    service: Service,
    manifest_dir: Path,
    refs: Mapping[str, str],
    pull_secret: str | None,
    release_id: str,
    git_sha: str,
    resolver: Resolver | None,
    rules: ManifestRules | None = None,
) -> ServicePreflight:
    path = manifest_dir / service.manifest
    try:
        manifests = load_manifests(path)
        _judge_policies(env, service, manifests)
        pinned = _pin_unbuilt(env, manifests, resolver) if resolver is not None else ()
        pins = {p.image.written: p.image.pinned for p in pinned}
        objs = render_service(
            service,
            env,
            manifests,
            refs=refs,
            pull_secret=pull_secret,
            release_id=release_id,
            git_sha=git_sha,
            pins=pins,
        )
        team = rules(service, objs) if rules is not None else []
        if team:
            raise PolicyError(f"the team's policies refuse {path}: " + "; ".join(team))
        if kube is not None:
            diff_objects(kube, objs)
    except DeploybookError as e:
        return ServicePreflight(service.name, path, problem=_located(e, path))
    return ServicePreflight(service.name, path, tuple(objs), pinned=pinned)


def _judge_policies(env: Environment, service: Service, manifests: list[Manifest]) -> None:
    """The enforced pre-apply policies, on the manifests as written; PolicyError names each breach."""
    problems = manifest_policy_problems(
        manifests,
        built=env.built_names,
        settings=env.policies_for(service),
        service=service.name,
        environment_file=str(env.file),
    )
    if problems:
        raise PolicyError("; ".join(problems))


def _pin_unbuilt(env: Environment, manifests: list[Manifest], resolver: Resolver) -> tuple[PinnedImage, ...]:
    """Every image of ``manifests`` that no service builds, resolved to its registry's digest."""
    built = env.built_names
    pinned = []
    for manifest in manifests:
        for container, image in unbuilt_images(manifest, built):
            try:
                resolved = resolver.resolve(image)
            except PolicyError as e:  # a promotion's: the promoted release ran no such image
                raise RenderError(
                    f"{manifest.title} container {container!r}: {e.message}", source=manifest.where
                ) from e
            except DeploybookError as e:
                # The remedy is part of the message: the preflight's one error keeps only messages.
                raise RenderError(
                    f"{manifest.title} container {container!r} uses image {image!r}, which no service of "
                    f"this environment builds, and it cannot be pinned to a digest ({e.message}); push the "
                    "image under that tag to its registry, fix the reference, or give credentials for its "
                    "registry in the Docker configuration (docker login)",
                    source=f"{manifest.where} (registry {e.source})" if e.source else manifest.where,
                ) from e
            pinned.append(PinnedImage(manifest.source.name, container, resolved))
    return tuple(pinned)


def _located(error: DeploybookError, path: Path) -> str:
    """The error's text and its own hint, with the manifest file named when the error does not name it."""
    text = f"{error.source}: {error.message}" if error.source else error.message
    if error.hint:
        text = f"{text} ({error.hint})"
    text = " ".join(text.split())
    return text if str(path) in text else f"{path}: {text}"
