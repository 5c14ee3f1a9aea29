"""Policies a release enforces, set in the environment file and per service, relaxed only with a reason.

Four built-in policies, all enforced unless a file says otherwise:

- ``non_root``: the service's container does not run as uid 0 (seen inside it, in the
  containers check);
- ``port_listening``: the service's declared port is listening inside its container (same);
- ``resources_requested``: every container and initContainer of the manifests requests
  resources (``resources.requests``), checked before anything is applied;
- ``no_latest_tag``: no image a service does not build is written with ``:latest`` or without
  a tag, checked in the manifests as written, before they are pinned and applied.

A value is ``true`` (enforce) or ``{enforce: false, reason: "..."}``; a relaxation without a
reason is a ConfigError naming the file, line and key, as is an unknown policy. The environment
file's ``policies:`` holds for every service; ``services: {NAME: {policies: ...}}`` (or a
service's ``policies`` in ``app.yaml``) wins for that service, policy by policy.
"""

from __future__ import annotations

from deploybook.config.model import POLICY_NAMES, PolicySetting
from deploybook.config.yamlnode import Node

__all__ = ["policy_settings", "relax_hint"]


def policy_settings(n: Node | None) -> tuple[PolicySetting, ...]:
    """The settings written under a ``policies`` key (none when the key is absent)."""
    if n is None:
        return ()
    n.only(*POLICY_NAMES)
    return tuple(_setting(name, value) for name, value in n.entries())


def _setting(name: str, n: Node) -> PolicySetting:
    where = f"{n.file}:{n.node.start_mark.line + 1}"
    value = n.value()
    if value is True:
        return PolicySetting(name, True, where=where)
    if value is False:
        n.fail("", "relaxing a policy needs a reason", hint=f'write {name}: {{enforce: false, reason: "why"}}')
    if not isinstance(value, dict):
        n.fail("", f"expected true or {{enforce: false, reason: ...}}, got {value!r}")
    n.only("enforce", "reason")
    if not n.has("enforce"):
        n.fail("enforce", "required: true or false")
    enforce = n.opt_bool("enforce")
    reason = (n.opt_str("reason") or "").strip()
    if not enforce and not reason:
        n.fail("reason", f"relaxing {name} needs a reason (a non-empty string): the report and record show it")
    return PolicySetting(name, enforce, reason, where)


def relax_hint(policy: str, service: str, environment_file: str) -> str:
    """How to relax ``policy`` for ``service``, for an error message."""
    return (
        f"or relax it for {service} in {environment_file}: "
        f'services: {{{service}: {{policies: {{{policy}: {{enforce: false, reason: "why"}}}}}}}}'
    )
