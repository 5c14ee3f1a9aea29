"""The policies judged in the manifests as written, before anything is pinned or applied.

``resources_requested``: every container and initContainer requests resources
(``resources.requests`` with at least one entry), so the scheduler places pods by what they
need. ``no_latest_tag``: an image that no service builds is not written as ``:latest`` or
without a tag (which means latest), so what a manifest names does not move under it; an
image written with ``@sha256:`` is fixed whatever its tag says. A relaxed policy (see
``deploybook.config.policies``) is not judged. Pure: no I/O; the preflight calls it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from deploybook.config.model import PolicySetting
from deploybook.config.policies import relax_hint
from deploybook.errors import DeploybookError
from deploybook.images.resolve import parse_image
from deploybook.manifests.load import Manifest
from deploybook.manifests.render import containers_of, unbuilt_images

__all__ = ["manifest_policy_problems"]


def manifest_policy_problems(
    manifests: Iterable[Manifest],
    *,
    built: Iterable[str],
    settings: Mapping[str, PolicySetting],
    service: str,
    environment_file: str,
) -> list[str]:
    """Every breach of an enforced pre-apply policy, each naming the manifest, the container,
    the policy and how to fix or relax it."""
    problems: list[str] = []
    names = set(built)
    for manifest in manifests:
        if _enforced(settings, "resources_requested"):
            problems += [
                f"{manifest.where}: {manifest.title} container {name!r} requests no resources "
                f"(policy resources_requested): add resources.requests (cpu, memory), "
                + relax_hint("resources_requested", service, environment_file)
                for name in _without_requests(manifest)
            ]
        if _enforced(settings, "no_latest_tag"):
            problems += [
                f"{manifest.where}: {manifest.title} container {name!r} runs image {image!r}, which is "
                f"the moving tag latest (policy no_latest_tag): write a fixed tag or @sha256: digest, "
                + relax_hint("no_latest_tag", service, environment_file)
                for name, image in unbuilt_images(manifest, names)
                if _is_latest(image)
            ]
    return problems


def _enforced(settings: Mapping[str, PolicySetting], policy: str) -> bool:
    setting = settings.get(policy)
    return setting is None or setting.enforce


def _without_requests(manifest: Manifest) -> list[str]:
    """Names of the containers (and initContainers) whose ``resources.requests`` is empty."""
    missing = []
    for container in containers_of(manifest.doc):
        resources = container.get("resources")
        requests = resources.get("requests") if isinstance(resources, dict) else None
        if not isinstance(requests, dict) or not requests:
            missing.append(str(container.get("name", "?")))
    return missing


def _is_latest(image: str) -> bool:
    try:
        source = parse_image(image)
    except DeploybookError:
        return False  # a malformed reference is the resolver's error, with its own words
    return source.digest is None and source.tag == "latest"
