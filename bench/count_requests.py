"""Count the requests a pytest run makes: Kubernetes API, registry, and ``kubectl`` processes.

Loaded into a benchmarked run with ``-p bench.count_requests``; the counts are written as JSON
to the file named by ``BENCH_REQUEST_LOG`` when the session ends. Counting happens at the
transport seams: the kubernetes client's ``RESTClientObject.request`` (every call the Python
client sends, a watch counted once when opened), ``requests.Session.send`` (registry v2), and
testinfra's ``run_local`` (each ``kubectl exec`` is a process with its own API requests).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

LOG_ENV = "BENCH_REQUEST_LOG"
_COUNTS: Counter[str] = Counter()
_LOCK = threading.Lock()
_NAMESPACED = re.compile(r"/namespaces/[^/]+/([^/]+)(/[^/?]+)?")


def _count(key: str) -> None:
    with _LOCK:
        _COUNTS[key] += 1


def api_kind(method: str, url: str, query: Any) -> str:
    """``watch pods``, ``list deployments``, ``get pods``... from one REST call.

    A GET through the service proxy is an HTTP check (``http via proxy``), not a read of the
    Service object: it is counted apart from the API reads.
    """
    path = url.split("?", 1)[0]
    if "/proxy" in path:
        return "http via proxy"
    is_watch = "watch=true" in url.lower() or any(k == "watch" and v for k, v in (query or []))
    match = _NAMESPACED.search(path)
    resource = match.group(1) if match else path.rstrip("/").rsplit("/", 1)[-1]
    named = bool(match and match.group(2))
    verb = method.lower()
    if verb == "get":
        verb = "watch" if is_watch else ("get" if named else "list")
    return f"{verb} {resource}"


def _patch_kubernetes() -> None:
    from kubernetes.client import rest

    original = rest.RESTClientObject.request

    def counted(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        _count("api " + api_kind(method, url, kwargs.get("query_params")))
        return original(self, method, url, *args, **kwargs)

    rest.RESTClientObject.request = counted  # type: ignore[method-assign]


def _patch_requests() -> None:
    import requests

    original = requests.Session.send

    def counted(self: Any, request: Any, **kwargs: Any) -> Any:
        _count(f"registry {request.method}")
        return original(self, request, **kwargs)

    requests.Session.send = counted  # type: ignore[method-assign]


def _patch_testinfra() -> None:
    try:
        from testinfra.backend import base
    except ImportError:
        return
    original = base.BaseBackend.run_local

    def counted(self: Any, command: str, *args: str) -> Any:
        if command.lstrip().startswith("kubectl "):
            _count("kubectl exec")
        return original(self, command, *args)

    base.BaseBackend.run_local = counted  # type: ignore[method-assign]


def summarize(counts: Counter[str]) -> dict[str, Any]:
    """Totals per transport, plus every key, for the results file."""
    api = sum(v for k, v in counts.items() if k.startswith("api ") and k != "api http via proxy")
    return {
        "api_requests": api,
        "http_checks_via_proxy": counts.get("api http via proxy", 0),
        "api_watches": sum(v for k, v in counts.items() if k.startswith("api watch ")),
        "api_gets_by_name": sum(v for k, v in counts.items() if k.startswith("api get ")),
        "registry_requests": sum(v for k, v in counts.items() if k.startswith("registry ")),
        "kubectl_processes": counts.get("kubectl exec", 0),
        "by_kind": dict(sorted(counts.items())),
    }


_patch_kubernetes()
_patch_requests()
_patch_testinfra()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Write the counts for the benchmark to read."""
    target = os.environ.get(LOG_ENV)
    if target and not hasattr(config, "workerinput"):
        Path(target).write_text(json.dumps(summarize(_COUNTS), indent=2))
