"""Manifests loaded from YAML (and JSON) files: every document, where it came from, checked for shape.

A manifest file is input nobody here wrote: it is read within the limits of
``deploybook.manifests.limits`` (alias expansion, nesting, document and file size), and each
document must be a mapping with ``apiVersion``, ``kind`` and ``metadata.name``; every problem is one
:class:`~deploybook.errors.RenderError` naming the file, the document and its line. A ``v1``
``List`` (what ``kubectl get -o yaml`` writes) stands for its items, as ``kubectl apply`` reads
it: each item is a manifest of its own, named by its place in the list. What ``helm template``
writes for ``helm test`` alone (an object whose ``helm.sh/hook`` annotation names only test
hooks: the connection check of every ``helm create`` chart) is left out, as Helm leaves it out
of an install or upgrade.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploybook.errors import RenderError
from deploybook.manifests.limits import check_file_size, load_documents, load_json_document

__all__ = ["Manifest", "load_manifests"]

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")  # what `kubectl apply -f DIR` reads


@dataclass(frozen=True)
class Manifest:
    """One YAML document and where it was read from (for error messages)."""

    doc: dict[str, Any]
    source: Path
    index: int  # 1-based position of the document in its file
    line: int  # 1-based line where the document starts
    item: int | None = None  # 1-based position in the document's List, if it is one

    @property
    def where(self) -> str:
        """``file, document N (line L)[, item I]``: the place a reader should look."""
        item = f", item {self.item}" if self.item is not None else ""
        return f"{self.source}, document {self.index} (line {self.line}){item}"

    @property
    def title(self) -> str:
        """``Kind/name`` of the document."""
        return f"{self.doc['kind']}/{self.doc['metadata']['name']}"


def load_manifests(path: str | Path) -> list[Manifest]:
    """Read every manifest document from a YAML file or a directory of them.

    A directory is read recursively, files in sorted order, so the result is
    stable. Empty documents are skipped; every other document must be a mapping
    with ``apiVersion``, ``kind`` and ``metadata.name``.
    """
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _MANIFEST_SUFFIXES)
    elif root.is_file():
        files = [root]
    else:
        raise RenderError(
            "manifest path does not exist", source=str(root), hint="check the environment's manifest source"
        )
    if not files:
        raise RenderError("no manifest files (*.yaml, *.yml, *.json) found", source=str(root))
    manifests: list[Manifest] = []
    for file in files:
        manifests.extend(_load_file(file))
    return manifests


def _load_file(file: Path) -> Iterator[Manifest]:
    try:
        check_file_size(file.stat().st_size, source=str(file))
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RenderError(f"cannot read manifest file: {e}", source=str(file)) from e
    # Counted while composed: an alias bomb or an oversized document is refused here, at once,
    # naming the file, the document and the limit, before anything is built from it.
    if file.suffix == ".json":
        documents: Iterator[tuple[int, int, Any]] = iter([(1, 1, load_json_document(text, source=str(file)))])
    else:
        documents = load_documents(text, source=str(file))
    for index, line, doc in documents:
        if doc is None:
            continue
        manifest = Manifest(doc=doc, source=file, index=index, line=line)
        _validate_kind(manifest)
        if not _is_list(doc):
            _validate_name(manifest)
            if not _helm_test(doc):
                yield manifest
            continue
        items = doc.get("items")
        if not isinstance(items, list):
            raise RenderError("a List needs 'items', a sequence of manifests", source=manifest.where)
        for number, item in enumerate(items, start=1):
            member = Manifest(doc=item, source=file, index=index, line=line, item=number)
            _validate_kind(member)
            if _is_list(item):
                raise RenderError("a List inside a List is not read; list its items instead", source=member.where)
            _validate_name(member)
            if not _helm_test(item):
                yield member


_HELM_TEST_HOOKS = frozenset({"test", "test-success", "test-failure"})


def _helm_test(doc: dict[str, Any]) -> bool:
    """True for an object Helm runs only under ``helm test`` (every hook it names is a test hook)."""
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    hooks = annotations.get("helm.sh/hook") if isinstance(annotations, dict) else None
    if not isinstance(hooks, str) or not hooks.strip():
        return False
    return {h.strip() for h in hooks.split(",")} <= _HELM_TEST_HOOKS


def _is_list(doc: dict[str, Any]) -> bool:
    return bool(doc["apiVersion"] == "v1" and doc["kind"] == "List")


def _validate_kind(manifest: Manifest) -> None:
    doc = manifest.doc
    if not isinstance(doc, dict):
        raise RenderError(f"a manifest must be a mapping, not {type(doc).__name__}", source=manifest.where)
    if (tool := _renderer_of(manifest)) is not None:
        name, render = tool
        raise RenderError(
            f"a {name} file, not a Kubernetes manifest: deploybook applies plain manifests",
            source=manifest.where,
            hint=f"render them once ({render} > FILE.yaml) and point the environment's manifests there",
        )
    for key in ("apiVersion", "kind"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise RenderError(f"missing or empty '{key}'", source=manifest.where)


def _renderer_of(manifest: Manifest) -> tuple[str, str] | None:
    """The tool, and its render command, of a file that makes manifests rather than being one."""
    if manifest.source.name == "Chart.yaml":
        return "Helm", "helm template NAME DIR"
    if manifest.doc.get("kind") == "Kustomization":
        return "kustomize", "kubectl kustomize DIR"
    return None


def _validate_name(manifest: Manifest) -> None:
    doc = manifest.doc
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str) or not metadata["name"]:
        generated = isinstance(metadata, dict) and metadata.get("generateName")
        raise RenderError(
            f"missing or empty 'metadata.name' in {doc['kind']}"
            + (f" (it has generateName {generated!r}, which an apply cannot use)" if generated else ""),
            source=manifest.where,
            hint="give it a metadata.name: a release applies each object by its name, as kubectl apply does"
            if generated
            else None,
        )
