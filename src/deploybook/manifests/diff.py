"""What applying an object changes: the live object against the would-be or applied one.

Server-set metadata and ``status`` are left out (they say nothing about what a release
decides), and Secret values never show: each is replaced by a marker that changes when the
value changes, so a diff says that a Secret changed without saying what it holds.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

import yaml

from deploybook.manifests.redact import redact_secret

__all__ = ["normalize", "unified_diff"]

# Metadata the server sets; it says nothing about what the release changes.
_SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")


def normalize(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without status and server-set metadata: what a release decides."""
    clean = copy.deepcopy(dict(obj))
    clean.pop("status", None)
    metadata = clean.get("metadata") or {}
    for key in _SERVER_METADATA:
        metadata.pop(key, None)
    return clean


def unified_diff(kind: str, live: Mapping[str, Any] | None, after: Mapping[str, Any], name: str) -> tuple[str, str]:
    """``(action, diff)``: create, update or unchanged, and the unified diff of the two objects."""
    before = normalize(live) if live is not None else None
    later = normalize(after)
    if kind == "Secret":  # each value as its sha256 marker: a changed value, a changed marker
        before = redact_secret(before) if before is not None else None
        later = redact_secret(later)
    action = "create" if before is None else "unchanged" if before == later else "update"
    if action == "unchanged":
        return action, ""
    return action, _unified(before, later, name)


def _unified(live: dict[str, Any] | None, would: dict[str, Any], name: str) -> str:
    before = _yaml_lines(live) if live is not None else []
    after = _yaml_lines(would)
    fromfile = f"live/{name}" if live is not None else "/dev/null"
    return "".join(difflib.unified_diff(before, after, fromfile=fromfile, tofile=f"release/{name}"))


def _yaml_lines(obj: Mapping[str, Any]) -> list[str]:
    # No line folding: a Secret's marker stays on one line, as a reader searches for it.
    text = yaml.safe_dump(dict(obj), sort_keys=True, default_flow_style=False, width=2**16)
    return text.splitlines(keepends=True)
