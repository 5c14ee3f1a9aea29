"""Where an environment's manifests come from, and the commit they were read at.

The one place that turns an environment's ``manifests`` setting into a directory on disk:
a path in the project (the project's own commit is what was used), or a git repository
fetched at a ref (the commit the ref pointed at is what was used). The preflight, the apply
stage and a rollback all read manifests through here; a rollback asks for the commit the
restored release recorded, not for the ref, which may have moved since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploybook.config.model import ManifestSource
from deploybook.sources.git import GitState, fetch_ref

__all__ = ["ManifestCheckout", "checkout_manifests"]


@dataclass(frozen=True)
class ManifestCheckout:
    """A directory holding the manifests, and what the release record says about it."""

    directory: Path
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def commit(self) -> str | None:
        """The commit the manifests were read at (None for a project that is not in git)."""
        commit = self.info.get("commit")
        return str(commit) if commit else None


def checkout_manifests(
    source: ManifestSource,
    *,
    root: Path,
    work_dir: Path,
    project: GitState | None,
    commit: str | None = None,
) -> ManifestCheckout:
    """The manifests of ``source``: a path under ``root``, or its git repository fetched into
    ``work_dir`` at its ref (or at ``commit`` when given, as a rollback does)."""
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
    used = fetch_ref(git.url, ref, work_dir)
    info = {"kind": "git", "url": git.url, "ref": git.ref, "path": git.path, "commit": used}
    return ManifestCheckout(work_dir / git.path, info)
