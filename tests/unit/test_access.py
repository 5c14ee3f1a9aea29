"""A context pointed at another environment's namespace is refused before anything is written.

What the identity may do is the API server's answer (SelfSubjectAccessReview); here the
answer is given, so the refusal's wording is what is tested. The real RBAC of the stack's
environments is tests/e2e/test_git_sources.py's.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from deploybook.cluster import access
from deploybook.errors import PolicyError


def test_a_context_that_may_not_write_there_is_one_error_naming_context_and_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[str, str, str, str]] = []

    def answer(kube: object, verb: str, group: str, resource: str, namespace: str) -> bool:
        asked.append((verb, group, resource, namespace))
        return resource == "configmaps"

    monkeypatch.setattr(access, "allowed", answer)
    kube = SimpleNamespace(context="deploybook-dev", where="server https://k:6443, context deploybook-dev")
    with pytest.raises(PolicyError) as info:
        access.require_write_access(kube, "dx29-prod", environment="prod")  # type: ignore[arg-type]
    text = str(info.value)
    assert "context deploybook-dev may not write in namespace dx29-prod" in text
    assert "denied: create leases, patch deployments" in text and "nothing was applied" in text
    assert {a[3] for a in asked} == {"dx29-prod"} and len(asked) == len(access.RELEASE_WRITES)


def test_a_context_that_may_write_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(access, "allowed", lambda *a: True)
    access.require_write_access(SimpleNamespace(context="c", where="w"), "ns", environment="e")  # type: ignore[arg-type]
