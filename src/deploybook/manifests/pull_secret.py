"""The registry's pull secret: a ``kubernetes.io/dockerconfigjson`` Secret in the namespace.

kubelet reads it to pull the release's images. The credentials go to the API server only:
this module never logs or returns them, and the Secret is applied like any other object.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Protocol

from deploybook.cluster.connect import KubeClients
from deploybook.manifests.apply import AppliedObject, apply_objects
from deploybook.manifests.render import MANAGED_BY, MANAGED_BY_LABEL

__all__ = ["ensure_pull_secret", "pull_secret_object"]


class _Credentials(Protocol):
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...


def ensure_pull_secret(
    kube: KubeClients,
    namespace: str,
    name: str,
    address: str,
    auth: _Credentials,
    *,
    dry_run: bool = False,
) -> AppliedObject:
    """Apply a ``kubernetes.io/dockerconfigjson`` Secret for the registry at ``address``.

    The credentials go to the API server only; they are never logged or returned.
    """
    return apply_objects(kube, [pull_secret_object(namespace, name, address, auth)], dry_run=dry_run)[0]


def pull_secret_object(namespace: str, name: str, address: str, auth: _Credentials) -> dict[str, Any]:
    """The Secret manifest kubelet reads to pull from ``address`` (kept out of logs)."""
    token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
    config = {"auths": {address: {"username": auth.username, "password": auth.password, "auth": token}}}
    encoded = base64.b64encode(json.dumps(config, sort_keys=True).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": encoded},
    }
