"""Where an environment's manifests come from, and the commit they were read at.

The one place that turns an environment's ``manifests`` setting into a directory on disk:
a path in the project (the project's own commit is what was used), a git repository
fetched at a ref (the commit the ref pointed at is what was used), or a folder of each
service's own source repository, as fetched for the build (each service's commit is what
was used; the files are gathered into one folder, so every reader finds a service's
manifest the same way). The preflight, the apply stage and a rollback all read manifests
through here; a rollback asks for the commits the restored release recorded, not for the
ref, which may have moved since.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploybook.config.model import ManifestSource, Service
from deploybook.errors import RenderError
from deploybook.sources.access import GitAccess
from deploybook.sources.git import Checkout, GitState, fetch_ref

__all__ = ["ManifestCheckout", "checkout_manifests", "gather_service_manifests"]


@dataclass(frozen=True)
class ManifestCheckout:
    """A directory holding the manifests, and what the release record says about it."""

    directory: Path
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def commit(self) -> str | None:
        """The commit the manifests were read at (None for a project that is not in git, or
        for manifests from each service's source: ``info["commits"]`` has those)."""
        commit = self.info.get("commit")
        return str(commit) if commit else None


def checkout_manifests(
    source: ManifestSource,
    *,
    root: Path,
    work_dir: Path,
    project: GitState | None,
    commit: str | None = None,
    access: GitAccess | None = None,
    services: Sequence[Service] = (),
    sources: Mapping[str, Checkout] | None = None,
) -> ManifestCheckout:
    """The manifests of ``source``: a path under ``root``, its git repository fetched into
    ``work_dir`` at its ref (or at ``commit`` when given, as a rollback does), or each of
    ``services``' manifest from its source checkout (``sources``, by name) gathered into
    ``work_dir``."""
    if source.service_path is not None:
        return gather_service_manifests(source.service_path, services, sources or {}, work_dir)
    if source.git is None:
        assert source.path is not None
        info = {
            "kind": "path",
            "path": str(source.path.relative_to(root)) if source.path.is_relative_to(root) else str(source.path),
            "commit": project.commit if project else None,
            "dirty": bool(project and project.dirty),
        }
        return ManifestCheckout(source.path, info)
    git = source.git
    ref = commit or git.ref
    used = fetch_ref(git.url, ref, work_dir, access=access)
    info = {"kind": "git", "url": git.url, "ref": git.ref, "path": git.path, "commit": used}
    return ManifestCheckout(work_dir / git.path, info)


def gather_service_manifests(
    path: str, services: Sequence[Service], sources: Mapping[str, Checkout], work_dir: Path
) -> ManifestCheckout:
    """Copy each service's manifest from ``CHECKOUT/PATH/`` into ``work_dir``; the record names
    every service's repository and commit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    commits = {}
    for service in services:
        checkout = sources.get(service.name)
        if checkout is None:
            raise RenderError(
                f"the manifests come from each service's source, and {service.name}'s was not fetched",
                service=service.name,
                hint="give the service a git source, or read the manifests from a path or an environment repository",
            )
        found = checkout.directory / path / service.manifest
        if not found.exists():
            raise RenderError(
                f"no {path}/{service.manifest} in {checkout.url} at {checkout.ref} ({checkout.short})",
                service=service.name,
                source=checkout.url,
                hint=f"add the service's manifest to its repository under {path}/, or fix manifests.service_source",
            )
        target = work_dir / service.manifest
        if found.is_dir():
            shutil.copytree(found, target, dirs_exist_ok=True)
        else:
            shutil.copyfile(found, target)
        commits[service.name] = {"url": checkout.url, "ref": checkout.ref, "commit": checkout.commit}
    return ManifestCheckout(work_dir, {"kind": "service-source", "path": path, "commits": commits})
