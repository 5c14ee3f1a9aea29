"""Secret values out of evidence: a marker with the value's sha256 instead of the value.

This module owns what a Secret looks like in everything a release writes down (the rendered
YAML attachment, the diff, the report, the bundle): every value under ``data`` and
``stringData`` becomes ``<redacted sha256:HEX, N bytes>``. The hash is of the value itself
(``data`` decoded from base64, ``stringData`` as UTF-8), so one value gives one marker
whichever field holds it, and a changed value shows as a changed marker in a diff.

``secret_values`` lists the values themselves, in the forms they can take in a file (as
written, decoded, base64, JSON-escaped, and a registry password inside a
``.dockerconfigjson``), so a last-line scrubber can search evidence files for them.

A sha256 of a guessable value (a short password) can be guessed offline; evidence that leaves
the team should carry high-entropy secrets only.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["LAST_APPLIED", "is_secret", "marker", "redact_objects", "redact_secret", "secret_values"]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_DOCKER_KEYS = (".dockerconfigjson", ".dockercfg")
_DOCKER_SECRET_FIELDS = ("password", "auth", "identitytoken", "registrytoken")
# Lines of a multi-line value (a PEM key) are searched on their own, since a serializer may
# escape the line breaks; short lines and PEM armour lines are not secret.
_MIN_LINE = 16


def marker(value: bytes, *, note: str | None = None) -> str:
    """``<redacted sha256:HEX, N bytes>`` for a value, with an optional note."""
    text = f"<redacted sha256:{hashlib.sha256(value).hexdigest()}, {len(value)} bytes"
    return f"{text}, {note}>" if note else f"{text}>"


def is_secret(obj: Mapping[str, Any]) -> bool:
    """True for a Secret, whatever its apiVersion (a mistyped one still carries values)."""
    return obj.get("kind") == "Secret"


def redact_secret(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with every Secret value replaced by its marker; other kinds copied as they are.

    Lists (``kind: List`` with Secrets among its items, ``SecretList`` from a list call) are
    redacted item by item. kubectl's last-applied annotation on a Secret holds the values
    too, so it is replaced by a marker of its own.
    """
    if obj.get("kind") == "SecretList":
        return _redact_items(obj, as_secrets=True)
    if obj.get("kind") == "List":
        return _redact_items(obj, as_secrets=False)
    if not is_secret(obj):
        return copy.deepcopy(dict(obj))
    return _redacted(obj)


def redact_objects(objs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``redact_secret`` of each object, in order."""
    return [redact_secret(obj) for obj in objs]


def secret_values(objs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every Secret value in ``objs``, in each form it may take in an evidence file.

    For ``data``: the base64 text, and the decoded value when it is UTF-8 text. For
    ``stringData``: the value and its base64. For both: the JSON-escaped form when it differs,
    the long lines of a multi-line value, and, in a ``.dockerconfigjson`` or ``.dockercfg``,
    each registry's password, auth (and the password inside it), identity and registry tokens.
    Empty values are left out: they would match everywhere.
    """
    found: set[str] = set()
    for secret in _secrets(objs):
        for value in _plain_values(secret):
            found.update(_forms(value))
    found.discard("")
    return found


def _redact_items(obj: Mapping[str, Any], *, as_secrets: bool) -> dict[str, Any]:
    result = {k: copy.deepcopy(v) for k, v in obj.items() if k != "items"}
    items = obj.get("items")
    if isinstance(items, list):
        result["items"] = [
            _redacted(item) if as_secrets and isinstance(item, Mapping) else _redact_any(item) for item in items
        ]
    return result


def _redact_any(item: Any) -> Any:
    return redact_secret(item) if isinstance(item, Mapping) else copy.deepcopy(item)


def _redacted(secret: Mapping[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(dict(secret))
    for field, decode in (("data", True), ("stringData", False)):
        values = result.get(field)
        if isinstance(values, dict):
            result[field] = {key: _value_marker(value, decode=decode) for key, value in values.items()}
    annotations = (result.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        text = str(annotations[LAST_APPLIED]).encode("utf-8")
        annotations[LAST_APPLIED] = marker(text, note="kubectl's last-applied configuration, which holds the values")
    return result


def _value_marker(value: Any, *, decode: bool) -> str:
    if not isinstance(value, str):
        return marker(json.dumps(value).encode("utf-8"), note=f"not a string but {type(value).__name__}")
    if not decode:
        return marker(value.encode("utf-8"))
    decoded = _b64decode(value)
    if decoded is None:
        return marker(value.encode("utf-8"), note="not valid base64: the hash is of the text as written")
    return marker(decoded)


def _b64decode(value: str) -> bytes | None:
    """Decode as the API server does (standard alphabet, padded; line breaks ignored)."""
    try:
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        return None


def _secrets(objs: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for obj in objs:
        kind = obj.get("kind")
        items = obj.get("items")
        if kind in ("List", "SecretList") and isinstance(items, list):
            members = [i for i in items if isinstance(i, Mapping)]
            yield from members if kind == "SecretList" else _secrets(members)
        elif is_secret(obj):
            yield obj


def _plain_values(secret: Mapping[str, Any]) -> Iterator[str]:
    """The values as text: raw and decoded for data, raw and base64 for stringData."""
    for key, value in _string_items(secret.get("data")):
        yield value
        decoded = _b64decode(value)
        text = _utf8(decoded) if decoded is not None else None
        if text is not None:
            yield text
            yield from _docker_values(key, text)
    for key, value in _string_items(secret.get("stringData")):
        yield value
        yield base64.b64encode(value.encode("utf-8")).decode("ascii")
        yield from _docker_values(key, value)


def _string_items(values: Any) -> Iterator[tuple[str, str]]:
    if isinstance(values, Mapping):
        for key, value in values.items():
            if isinstance(value, str):
                yield str(key), value


def _utf8(value: bytes) -> str | None:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _docker_values(key: str, text: str) -> Iterator[str]:
    """Registry credentials in a docker config: ``{"auths": {host: {...}}}`` or legacy ``{host: {...}}``."""
    if key not in _DOCKER_KEYS:
        return
    try:
        config = json.loads(text)
    except ValueError:
        return
    if not isinstance(config, dict):
        return
    auths = config.get("auths")
    registries: dict[str, Any] = auths if isinstance(auths, dict) else config
    for entry in registries.values():
        if isinstance(entry, dict):
            yield from _registry_values(entry)


def _registry_values(entry: Mapping[str, Any]) -> Iterator[str]:
    for field in _DOCKER_SECRET_FIELDS:
        value = entry.get(field)
        if isinstance(value, str):
            yield value
    auth = entry.get("auth")
    decoded = _b64decode(auth) if isinstance(auth, str) else None
    text = _utf8(decoded) if decoded is not None else None
    if text is not None and ":" in text:
        yield text
        yield text.split(":", 1)[1]


def _forms(value: str) -> Iterator[str]:
    yield value
    escaped = json.dumps(value, ensure_ascii=False)[1:-1]
    if escaped != value:
        yield escaped
    if "\n" in value:
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= _MIN_LINE and not line.startswith("-----"):
                yield line
