"""YAML limits: manifests are untrusted input, refused locally before they cost anything.

This module owns the loader that turns a manifest file's text into documents while it
counts what each document would cost once expanded. It refuses, naming the file, the
document, the limit and the count it saw:

* an alias bomb ("billion laughs"): a few hundred bytes whose aliases expand to millions of
  nodes. PyYAML's constructor shares aliased objects, so loading one is quick, but the first
  ``json.dumps``, ``deepcopy`` or API request expands it. The count below is the expanded size
  (an alias re-visits its whole anchored subtree) and is kept while the document is composed,
  so the limit trips before anything is constructed;
* a recursive alias (``&a [*a]``), which has no JSON form at all;
* nesting deeper than ``max_depth`` (text or aliases), which would exhaust Python's recursion
  limit in the composer, ``deepcopy`` or ``yaml.safe_dump`` (about 4 frames a level);
* a document or a file larger than the cluster can take: kube-apiserver refuses request
  bodies over 3 MiB and etcd's default value limit is 1.5 MiB.

Measured on this machine (2 cores, PyYAML 6.0.3, pure-Python SafeLoader) with
``pytest tests/unit/test_yaml_limits.py -k measured -s``:
the classic 9-level billion laughs document (473 bytes, 9**9 = 387 million nodes expanded) is
refused in about 2 ms (7 to 13 ms on a cold first call), allocating under 30 KiB. Unchecked,
``yaml.safe_load`` returns it at once, and ``json.dumps`` of the result would then take about
45 s and write 3 GB (extrapolated from 7 levels: 0.55 s, 39 MB). A 200-document file of
ordinary manifests (anchors and merge keys included) loads to the same objects as
``yaml.safe_load_all`` in 1.02 to 1.1 times its time (0.21 s against 0.19 s, say).

Documents are numbered as ``deploybook.manifests.load`` reports them (1-based index counting
empty documents, 1-based line of the document's root node); every manifest is read through here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import Node

from deploybook.errors import RenderError

__all__ = ["DEFAULT_LIMITS", "YamlLimits", "check_file_size", "load_documents", "load_json_document"]

MIB = 1024 * 1024
_BOMB_HINT = (
    'this looks like a YAML alias bomb ("billion laughs"); write the values out instead of '
    "aliasing them: no object the API server can store has this many nodes"
)
_SIZE_HINT = (
    "kube-apiserver refuses request bodies over 3 MiB and etcd stores at most 1.5 MiB per object: "
    "move large data into a volume or an image, or split it over several objects"
)


@dataclass(frozen=True)
class YamlLimits:
    """What one manifest file and each of its documents may cost.

    ``max_nodes`` counts the nodes of a document as expanded (each alias counts its anchored
    subtree again); ``max_depth`` is the deepest nesting, aliases expanded. The defaults let
    through anything the cluster could store: an object within etcd's 1.5 MiB has fewer than
    about 790 000 nodes (a JSON node costs at least 2 bytes), and no CRD schema nests 100 deep.
    """

    max_file_bytes: int = 16 * MIB
    max_documents: int = 10_000
    max_document_bytes: int = 3 * MIB
    max_nodes: int = 1_000_000
    max_aliases: int = 1_000
    max_depth: int = 100


DEFAULT_LIMITS = YamlLimits()


class _LimitExceeded(Exception):
    """Raised inside the composer; turned into a RenderError where the document is known."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _CountingLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts each document's expanded size as it goes."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        super().__init__(text)
        self.limits = limits
        self.root_line = 0
        self._reset()

    def _reset(self) -> None:
        self.nodes = 0
        self.aliases = 0
        self.depth = 0
        self.deepest = 0
        self.doc_start = 0
        # id(anchored node) -> (expanded node count, height); absent while it is being composed.
        self.expansions: dict[int, tuple[int, int]] = {}

    def _peek(self) -> Any:
        return self.peek_event()  # type: ignore[no-untyped-call]

    def compose_document(self) -> Node | None:
        self._reset()
        self.doc_start = self._peek().end_mark.index
        try:
            return super().compose_document()
        finally:
            self.expansions = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping, refused when it writes a key twice (``<<`` merges aside: a key of the
        mapping itself may override a merged one): kubectl keeps the last one silently."""
        first: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key_node.value!r} written twice in one mapping (first at line {first[key]}): "
                    "kubectl would keep the second silently; keep one",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self._peek()
        if parent is None:
            self.root_line = event.start_mark.line + 1
        self._check_document_size(event.start_mark.index)
        if isinstance(event, yaml.AliasEvent):
            self._count_alias(event)
            return super().compose_node(parent, index)
        return self._compose_counted(parent, index, event.anchor)

    def _compose_counted(self, parent: Node | None, index: Any, anchor: str | None) -> Node | None:
        self.depth += 1
        depth, outer_deepest = self.depth, self.deepest
        self._check_depth(depth)
        self.deepest = depth
        first = self.nodes
        self._add_nodes(1)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self.expansions[id(node)] = (self.nodes - first, self.deepest - depth + 1)
        self.deepest = max(outer_deepest, self.deepest)
        self.depth -= 1
        return node

    def _count_alias(self, event: Any) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # the composer reports the undefined alias itself
        expansion = self.expansions.get(id(target))
        if expansion is None:
            raise _LimitExceeded(
                f"alias *{event.anchor} at line {event.start_mark.line + 1} refers to a node that "
                "contains it: a recursive structure has no JSON form",
                "remove the alias; a Kubernetes object cannot be recursive",
            )
        self.aliases += 1
        if self.aliases > self.limits.max_aliases:
            raise _LimitExceeded(
                f"more than {self.limits.max_aliases:,} aliases (limit max_aliases; "
                f"{self.aliases:,} seen when refused)",
                _BOMB_HINT,
            )
        size, height = expansion
        self._add_nodes(size)
        self._check_depth(self.depth + height)
        self.deepest = max(self.deepest, self.depth + height)

    def _add_nodes(self, count: int) -> None:
        self.nodes += count
        if self.nodes > self.limits.max_nodes:
            raise _LimitExceeded(
                f"expands to more than {self.limits.max_nodes:,} nodes (limit max_nodes; "
                f"{self.nodes:,} counted when refused, each alias counting its anchored subtree)",
                _BOMB_HINT,
            )

    def _check_depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise _LimitExceeded(
                f"nests deeper than {self.limits.max_depth} levels (limit max_depth; "
                f"depth {depth} reached when refused)",
                "flatten the structure; Kubernetes objects nest a few dozen levels at most",
            )

    def _check_document_size(self, position: int) -> None:
        # Characters never outnumber UTF-8 bytes, so this early check never refuses too soon.
        if position - self.doc_start > self.limits.max_document_bytes:
            raise _LimitExceeded(
                f"document is larger than {self.limits.max_document_bytes:,} bytes of YAML "
                f"(limit max_document_bytes; more than {position - self.doc_start:,} characters read)",
                _SIZE_HINT,
            )


def check_file_size(size: int, *, source: str, limits: YamlLimits = DEFAULT_LIMITS) -> None:
    """Refuse a manifest file of ``size`` bytes before it is read, if it is over the limit."""
    if size > limits.max_file_bytes:
        raise RenderError(
            f"manifest file is {size:,} bytes, more than {limits.max_file_bytes:,} (limit max_file_bytes)",
            source=source,
            hint="split the manifests over several files, and keep large data out of manifests",
        )


def load_documents(text: str, *, source: str, limits: YamlLimits = DEFAULT_LIMITS) -> Iterator[tuple[int, int, Any]]:
    """Yield (1-based document index, 1-based start line, document) for each YAML document.

    The documents are what ``yaml.safe_load_all`` returns. A document over a limit raises
    RenderError with ``source`` "``source``, document N (line L)", the limit and the count seen;
    malformed YAML raises RenderError as ``deploybook.manifests.render`` words it.
    """
    check_file_size(len(text.encode("utf-8")), source=source, limits=limits)
    loader = _CountingLoader(text, limits)
    index = 0
    reading = 1  # the document an error is in: the next one until one is composed
    try:
        while loader.check_node():
            _check_document_count(index + 1, source, limits)
            node = _compose(loader, text, index + 1, source)
            index += 1
            if node is not None:
                reading = index
                yield index, node.start_mark.line + 1, loader.construct_document(node)
            reading = index + 1
    except yaml.YAMLError as e:
        raise _malformed(e, reading, source) from e
    finally:
        loader.dispose()


def load_json_document(text: str, *, source: str, limits: YamlLimits = DEFAULT_LIMITS) -> Any:
    """The one JSON value of a ``.json`` manifest file, within the same size and depth limits.

    JSON is read as JSON, not as YAML: PyYAML refuses a tab-indented JSON file and reads
    ``1e3`` as a string. Malformed JSON raises RenderError naming the line and column.
    """
    size = len(text.encode("utf-8"))
    check_file_size(size, source=source, limits=limits)
    if size > limits.max_document_bytes:
        raise RenderError(
            f"document is larger than {limits.max_document_bytes:,} bytes (limit max_document_bytes)",
            source=f"{source}, document 1 (line 1)",
            hint=_SIZE_HINT,
        )
    too_deep = RenderError(
        f"document nests deeper than {limits.max_depth} levels (limit max_depth)",
        source=f"{source}, document 1 (line 1)",
        hint="no object the API server stores nests this deep; flatten the data",
    )
    try:
        doc = json.loads(text, object_pairs_hook=_once_each)
    except _DuplicateKey as e:
        raise RenderError(
            f"key {e.key!r} written twice in one JSON object: kubectl would keep the second silently; keep one",
            source=f"{source}, document 1 (line 1)",
        ) from None
    except json.JSONDecodeError as e:
        raise RenderError(f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=source) from None
    except RecursionError:  # deeper than the interpreter's recursion limit, so than max_depth too
        raise too_deep from None
    if _json_depth(doc, limits.max_depth) > limits.max_depth:
        raise too_deep
    return doc


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key written twice raises _DuplicateKey."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _DuplicateKey(key)
        found[key] = value
    return found


def _json_depth(doc: Any, stop_at: int) -> int:
    """How deep ``doc`` nests (a scalar is 0), counted no further than ``stop_at + 1``."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= stop_at:
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _compose(loader: _CountingLoader, text: str, index: int, source: str) -> Node | None:
    try:
        node = loader.get_node()
        if node is not None:
            _check_encoded_size(text, node, loader.limits)
        return node
    except _LimitExceeded as e:
        where = f"{source}, document {index} (line {loader.root_line})"
        raise RenderError(e.message, source=where, hint=e.hint) from None


def _check_encoded_size(text: str, node: Node, limits: YamlLimits) -> None:
    size = len(text[node.start_mark.index : node.end_mark.index].encode("utf-8"))
    if size > limits.max_document_bytes:
        raise _LimitExceeded(
            f"document is {size:,} bytes of YAML, more than {limits.max_document_bytes:,} (limit max_document_bytes)",
            _SIZE_HINT,
        )


def _check_document_count(index: int, source: str, limits: YamlLimits) -> None:
    if index > limits.max_documents:
        raise RenderError(
            f"more than {limits.max_documents:,} YAML documents in one file (limit max_documents)",
            source=source,
            hint="split the manifests over several files",
        )


def _malformed(error: yaml.YAMLError, index: int, source: str) -> RenderError:
    """Malformed YAML: the document, the line and column, and what the parser said."""
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
    problem = getattr(error, "problem", None) or str(error)
    return RenderError(f"malformed YAML in document {index} at {where}: {problem}", source=source)
