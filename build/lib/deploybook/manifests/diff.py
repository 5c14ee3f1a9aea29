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

__all__ = ["normalize", "redact_secret_values", "unified_diff"]

# Metadata the server sets; it says nothing about what the release changes.
_SERVER_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")
_REDACTED = "<redacted>"


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
    if kind == "Secret":
        before, later = redact_secret_values(before, later)
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
    return yaml.safe_dump(dict(obj), sort_keys=True, default_flow_style=False).splitlines(keepends=True)


def redact_secret_values(
    live: dict[str, Any] | None, would: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Secret values replaced by markers; a changed value shows as a changed marker."""
    before = dict((live or {}).get("data") or {})
    after = dict(would.get("data") or {})
    for key in ("data", "stringData"):
        for obj, other, side in ((live, after, "old"), (would, before, "new")):
            values = (obj or {}).get(key)
            if isinstance(values, dict):
                for k, v in values.items():
                    values[k] = _REDACTED if other.get(k) == v else f"{_REDACTED} ({side} value)"
    return live, would
