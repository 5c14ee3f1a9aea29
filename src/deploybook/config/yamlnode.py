"""A YAML node that remembers its file and key path, so every bad value is reported located.

``node.fail(key, message)`` raises one :class:`~deploybook.errors.ConfigError` naming the file,
the line and the dotted key (``environments/dev.yaml:14: key 'services[1].port'``).
``${VAR}`` and ``${VAR:-default}`` are expanded where a value asks for it, so one file works
with the local stack's exported variables; an unset variable is an error naming it.
"""

from __future__ import annotations

import os
import re
from typing import Any, NoReturn

import yaml

from deploybook.errors import ConfigError

__all__ = ["DNS_LABEL", "Node", "compose"]

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}")


def compose(text: str) -> yaml.Node | None:
    """The node tree of one YAML document, with the line of every node.

    libyaml's parser where PyYAML has it (an environment file of 100 services: 5 ms, not 50);
    text it rejects is parsed again by the pure-Python one, so a syntax error reads the same
    whichever is installed.
    """
    fast = getattr(yaml, "CSafeLoader", None)
    if fast is not None:
        try:
            return yaml.compose(text, Loader=fast)
        except yaml.YAMLError:
            pass
    return yaml.compose(text, Loader=yaml.SafeLoader)


class Node:
    """A composed YAML node that remembers its file and key path, for located errors."""

    node: yaml.Node

    def __init__(self, node: yaml.Node, file: str, key: str) -> None:
        self.node = node
        self.file = file
        self.key = key

    def _path(self, name: str) -> str:
        if not name:
            return self.key
        return f"{self.key}.{name}" if self.key else name

    def fail(self, name: str, message: str, node: yaml.Node | None = None, hint: str | None = None) -> NoReturn:
        target = node or self._entry(name)[1] or self.node
        line = target.start_mark.line + 1
        raise ConfigError(message, file=self.file, line=line, key=self._path(name), hint=hint)

    def _entry(self, name: str) -> tuple[yaml.Node | None, yaml.Node | None]:
        if isinstance(self.node, yaml.MappingNode):
            for k, v in self.node.value:
                if k.value == name:
                    return k, v
        return None, None

    def only(self, *allowed: str) -> None:
        if not isinstance(self.node, yaml.MappingNode):
            raise ConfigError(
                "must be a mapping", file=self.file, line=self.node.start_mark.line + 1, key=self.key or None
            )
        self._once_each()
        for k, _ in self.node.value:
            if k.value not in allowed:
                self.fail(k.value, f"unknown key (allowed: {', '.join(allowed)})", k)

    def _once_each(self) -> None:
        """A key written twice in one mapping is an error: YAML loaders differ on which one counts."""
        first: dict[str, int] = {}
        for k, _ in self.node.value:
            key = str(k.value)
            if key in first:
                self.fail(key, f"key written twice (first at line {first[key]})", k)
            first[key] = k.start_mark.line + 1

    def has(self, name: str) -> bool:
        return self._entry(name)[1] is not None

    def child(self, name: str) -> Node:
        value = self._entry(name)[1]
        if value is None:
            self.fail(name, "required key is missing")
        assert value is not None
        return Node(value, self.file, self._path(name))

    def opt_child(self, name: str) -> Node | None:
        return self.child(name) if self.has(name) else None

    def entries(self) -> list[tuple[str, Node]]:
        """The (key, value) pairs of a mapping, in file order."""
        if not isinstance(self.node, yaml.MappingNode):
            raise ConfigError("must be a mapping", file=self.file, line=self.node.start_mark.line + 1, key=self.key)
        self._once_each()
        return [(str(k.value), Node(v, self.file, self._path(str(k.value)))) for k, v in self.node.value]

    def items(self) -> list[Node]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise ConfigError("must be a list", file=self.file, line=self.node.start_mark.line + 1, key=self.key)
        return [Node(v, self.file, f"{self.key}[{i}]") for i, v in enumerate(self.node.value)]

    def value(self) -> Any:
        return yaml.SafeLoader("").construct_object(self.node, deep=True)

    def _scalar(self, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        if not self.has(name):
            return None
        value = self.child(name).value()
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(name, f"expected {what}, got {value!r}")
        return value

    def text(self, name: str, *, expand: bool = False, dns: bool = False) -> str:
        value = self.opt_str(name, expand=expand, dns=dns)
        if not value:
            self.fail(name, "required, a non-empty string")
        assert value is not None
        return value

    def opt_str(self, name: str, *, expand: bool = False, dns: bool = False) -> str | None:
        value = self._scalar(name, str, "a string")
        if value is not None and expand:
            value = self._expand(name, value) or None
        if value is not None and dns and not DNS_LABEL.match(value):
            self.fail(name, f"{value!r} is not a DNS label (lower case letters, digits, '-')")
        return None if value is None else str(value)

    def _expand(self, name: str, value: str) -> str:
        def substitute(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(3)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            self.fail(name, f"${{{var}}} is not set", hint=f'export {var} (local stack: eval "$(stack/env)")')
            return ""

        return _VAR.sub(substitute, value)

    def opt_bool(self, name: str) -> bool:
        return bool(self._scalar(name, bool, "true or false"))

    def opt_int(self, name: str, *, minimum: int) -> int | None:
        value = self._scalar(name, int, "an integer")
        if value is not None and value < minimum:
            self.fail(name, f"{value} is below the minimum {minimum}")
        return None if value is None else int(value)

    def opt_float(self, name: str) -> float | None:
        value = self._scalar(name, (int, float), "a number of seconds")
        if value is not None and value <= 0:
            self.fail(name, f"{value} must be positive")
        return float(value) if value is not None else None
