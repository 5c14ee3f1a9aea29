"""Kubernetes API clients, found the way kubectl finds the cluster.

Precedence, as kubectl has it:

1. an explicit ``kubeconfig`` (one path, or several joined by ``:``),
2. the ``KUBECONFIG`` environment variable (same syntax),
3. ``~/.kube/config``,
4. the pod's service account (in-cluster), when none of the above exists and the
   process runs in a pod.

``context`` picks a context of the kubeconfig (default: its current context).
TLS is always verified: a kubeconfig asking to skip verification, or a plain
``http://`` server, is refused. :func:`connect` asks the server for its version
once, so an unreachable cluster, a rejected credential or an unknown context is
one :class:`~deploybook.errors.ClusterError` before anything else runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.dynamic import DynamicClient

from deploybook.errors import ClusterError

DEFAULT_KUBECONFIG = "~/.kube/config"
# Probe timeouts (connect, read) in seconds: long enough for a busy API server,
# short enough that a wrong address fails the run quickly.
PROBE_TIMEOUT = (5.0, 15.0)
# Connections kept open to the API server. Every service's checks run in a thread of their own;
# with fewer, each thread beyond the pool opens (and completes a TLS handshake for) a new one.
CONNECTIONS = 64
_SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class KubeClients:
    """Typed API clients sharing one connection configuration.

    ``server`` is the API server URL, ``context`` the kubeconfig context used
    (``None`` in-cluster), ``kubeconfig`` the file list read (empty in-cluster).
    """

    api_client: k8s.ApiClient
    core: k8s.CoreV1Api
    apps: k8s.AppsV1Api
    batch: k8s.BatchV1Api
    coordination: k8s.CoordinationV1Api
    discovery: k8s.DiscoveryV1Api
    storage: k8s.StorageV1Api
    dynamic: DynamicClient
    server: str
    context: str | None
    kubeconfig: str = ""

    def server_version(self) -> str:
        """The API server's git version, e.g. ``v1.34.4``."""
        return str(k8s.VersionApi(self.api_client).get_code(_request_timeout=PROBE_TIMEOUT).git_version)

    @property
    def where(self) -> str:
        """Server, context and kubeconfig, for error messages."""
        return _where(self.server, self.context, self.kubeconfig)


def connect(
    context: str | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    in_cluster: bool | None = None,
) -> KubeClients:
    """Connect to the cluster and check that it answers.

    ``in_cluster``: ``True`` forces the pod's service account, ``False`` forbids
    it, ``None`` uses it only when no kubeconfig exists and the process runs in a
    pod (kubectl's rule).
    """
    paths = _kubeconfig_paths(kubeconfig)
    if in_cluster is None:
        in_cluster = not paths and _running_in_pod()
    if in_cluster:
        if context:
            raise ClusterError(
                f"context {context!r} given, but the in-cluster configuration has no contexts",
                hint="drop the context, or point KUBECONFIG at a kubeconfig that has it",
            )
        configuration, used_context, files = _in_cluster_configuration(), None, ""
    else:
        files = os.pathsep.join(paths)
        configuration, used_context = _kubeconfig_configuration(files, context, kubeconfig)
    _require_verified_tls(configuration, used_context, files)
    configuration.connection_pool_maxsize = CONNECTIONS
    api_client = k8s.ApiClient(configuration)
    _probe(api_client, configuration.host, used_context, files)
    return _clients(api_client, configuration.host, used_context, files)


def _kubeconfig_paths(kubeconfig: str | os.PathLike[str] | None) -> list[str]:
    """Existing kubeconfig files, in precedence order (missing ones skipped, as kubectl does)."""
    raw = os.fspath(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
    candidates = [os.path.expanduser(p) for p in raw.split(os.pathsep) if p]
    existing = [p for p in candidates if os.path.isfile(p)]
    if kubeconfig is not None and not existing:
        raise ClusterError(
            f"kubeconfig {raw!r} does not exist",
            hint='pass an existing kubeconfig file (for the local stack: eval "$(stack/env)")',
        )
    return existing


def _running_in_pod() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (_SERVICE_ACCOUNT_DIR / "token").is_file()


def _in_cluster_configuration() -> k8s.Configuration:
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException as e:
        raise ClusterError(
            f"in-cluster configuration unusable: {e}",
            source=str(_SERVICE_ACCOUNT_DIR),
            hint="run inside a pod with a service account, or set KUBECONFIG",
        ) from e
    return configuration


def _kubeconfig_configuration(
    files: str, context: str | None, requested: str | os.PathLike[str] | None
) -> tuple[k8s.Configuration, str]:
    if not files:
        searched = os.fspath(requested) if requested else os.environ.get("KUBECONFIG") or DEFAULT_KUBECONFIG
        raise ClusterError(
            f"no kubeconfig found (looked at {searched}) and not running in a pod",
            hint='set KUBECONFIG or pass a kubeconfig (for the local stack: eval "$(stack/env)")',
        )
    names, current = _contexts(files)
    chosen = context or current
    if not chosen:
        raise ClusterError(
            "kubeconfig has no current-context and no context was given",
            source=files,
            hint=f"choose one of: {', '.join(names) or 'none defined'}",
        )
    if chosen not in names:
        raise ClusterError(
            f"context {chosen!r} not found in kubeconfig",
            source=files,
            hint=f"use one of: {', '.join(names) or 'none defined'}",
        )
    configuration = k8s.Configuration()
    try:
        k8s_config.load_kube_config(
            config_file=files, context=chosen, client_configuration=configuration, persist_config=False
        )
    except (ConfigException, OSError, ValueError) as e:
        raise ClusterError(f"context {chosen!r} unusable: {e}", source=files) from e
    return configuration, chosen


def _contexts(files: str) -> tuple[list[str], str | None]:
    """Context names of all files and the current context.

    As in kubectl, the first file that sets ``current-context`` wins (the Python
    client would let the last one win, so it is resolved here).
    """
    names: list[str] = []
    current: str | None = None
    for path in files.split(os.pathsep):
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
            raise ClusterError(f"kubeconfig unreadable: {e}", source=path) from e
        if not isinstance(data, dict):
            raise ClusterError("kubeconfig is not a YAML mapping", source=path)
        names.extend(c["name"] for c in data.get("contexts") or [] if isinstance(c, dict) and "name" in c)
        current = current or data.get("current-context") or None
    return names, current


def _require_verified_tls(configuration: k8s.Configuration, context: str | None, files: str) -> None:
    if not configuration.host.startswith("https://"):
        raise ClusterError(
            f"refusing a cluster without TLS: {_where(configuration.host, context, files)}",
            hint="use the API server's https:// address",
        )
    if not configuration.verify_ssl:
        raise ClusterError(
            f"refusing to skip TLS verification (insecure-skip-tls-verify): "
            f"{_where(configuration.host, context, files)}",
            hint="remove insecure-skip-tls-verify and give the cluster's certificate-authority",
        )


def _probe(api_client: k8s.ApiClient, server: str, context: str | None, files: str) -> None:
    where = _where(server, context, files)
    try:
        k8s.VersionApi(api_client).get_code(_request_timeout=PROBE_TIMEOUT)
    except ApiException as e:
        if e.status in (401, 403):
            raise ClusterError(
                f"cluster refused the credentials (HTTP {e.status}): {where}",
                hint="renew the credentials of this context",
            ) from e
        raise ClusterError(
            f"cluster unreachable or unusable ({e.reason or e.status}): {where}",
            hint="check that the cluster is running and the CA in the kubeconfig is its CA",
        ) from e
    except ValueError as e:
        # The answer did not parse as a Kubernetes version: not an API server.
        raise ClusterError(
            f"the server answered, but not as a Kubernetes API server: {where}",
            hint="check the server address of this context",
        ) from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise ClusterError(
            f"cluster unreachable ({_root_cause(e)}): {where}",
            hint="check that the cluster is running (local stack: stack/status) and the server address",
        ) from e


def _root_cause(error: BaseException) -> str:
    """What went wrong on the connection, without urllib3's object reprs."""
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    for known in (
        "Connection refused",
        "timed out",
        "Connection reset",
        "Name or service not known",
        "No route to host",
        "Remote end closed connection",
    ):
        if known.lower() in text.lower():
            return known.lower()
    return text.split(">: ", 1)[-1]


def status_body(error: ApiException) -> dict[str, Any]:
    """The Status the API server answered an error with (``{}`` when it sent none)."""
    body = error.body.decode() if isinstance(error.body, bytes) else error.body
    try:
        parsed = json.loads(body or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def api_message(error: ApiException) -> str:
    """The API server's own message (a Status), never the request body."""
    message = status_body(error).get("message")
    return f"{message} (HTTP {error.status})" if message else f"HTTP {error.status} {error.reason}"


@contextmanager
def api_errors(where: str, doing: str) -> Iterator[None]:
    """Turn a lost connection to the API server into one ClusterError naming the server.

    The Kubernetes client lets urllib3's errors (``MaxRetryError``, ``ProtocolError``) out
    as they are when the API server is away; mid-release they must say which server was
    lost, while doing what, and what to do next.
    """
    try:
        yield
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise ClusterError(
            f"API server unreachable while {doing} ({_root_cause(e)})",
            source=where,
            hint="check that the cluster is running (local stack: stack/status), then run the release "
            "again: applying is idempotent",
        ) from e


def _clients(api_client: k8s.ApiClient, server: str, context: str | None, files: str) -> KubeClients:
    try:
        dynamic = DynamicClient(api_client)
    except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
        raise ClusterError(f"API discovery failed: {_where(server, context, files)}: {e}") from e
    return KubeClients(
        api_client=api_client,
        core=k8s.CoreV1Api(api_client),
        apps=k8s.AppsV1Api(api_client),
        batch=k8s.BatchV1Api(api_client),
        coordination=k8s.CoordinationV1Api(api_client),
        discovery=k8s.DiscoveryV1Api(api_client),
        storage=k8s.StorageV1Api(api_client),
        dynamic=dynamic,
        server=server,
        context=context,
        kubeconfig=files,
    )


def _where(server: str, context: str | None, files: str) -> str:
    parts = [f"server {server}"]
    parts.append(f"context {context}" if context else "in-cluster service account")
    if files:
        parts.append(f"kubeconfig {files}")
    return ", ".join(parts)
