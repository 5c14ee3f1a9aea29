"""The process environment, read safely from a release's threads.

pytest sets ``PYTEST_CURRENT_TEST`` before each phase of a test and removes it after the
teardown, in the main thread, while the release's threads build, push and check. A thread
iterating ``os.environ`` at that moment gets a KeyError: the keys are listed first and their
values read after. requests iterates it on every call of a session that trusts the
environment (to find proxies), so the HTTP clients that threads use take the environment from
here instead: a copy, taken again when a variable went away mid-copy, and what requests would
have found in it (the proxies for a URL, the CA bundle) worked out from that copy
(`deploybook.http.SnapshotSession` is the requests session that uses them).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["ca_bundle", "proxies_for", "snapshot"]


def snapshot() -> dict[str, str]:
    """A copy of ``os.environ`` that another thread's removal of a variable cannot break."""
    while True:
        try:
            return dict(os.environ)
        except KeyError:  # removed between listing the names and reading the values
            continue


def proxies_for(url: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The proxies requests would take from ``environ`` for ``url`` (``HTTPS_PROXY``,
    ``ALL_PROXY`` and so on, the lower-case name first), none when ``NO_PROXY`` covers its host."""
    found: dict[str, str] = {}
    for name in sorted(environ, key=str.islower):  # lower-case names last, so they win
        value = environ[name]
        if value and name.lower().endswith("_proxy"):
            found[name.lower().removesuffix("_proxy")] = value
    bypass = found.pop("no", "")
    parts = urlsplit(url)
    if any(_covers(entry.strip().lower(), parts.hostname or "", parts.port) for entry in bypass.split(",")):
        return {}
    return found


def ca_bundle(environ: Mapping[str, str]) -> str | bool:
    """What requests verifies TLS against when given no CA file: ``REQUESTS_CA_BUNDLE``,
    then ``CURL_CA_BUNDLE``, else its own trust store."""
    return environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or True


def _covers(entry: str, host: str, port: int | None) -> bool:
    """Whether one ``NO_PROXY`` entry (``*``, ``name``, ``.name``, ``name:port``, an address or
    a network) covers ``host`` at ``port``."""
    if entry == "*":
        return True
    name, _, entry_port = entry.partition(":") if entry.count(":") == 1 else (entry, "", "")
    if entry_port and entry_port != str(port):
        return False
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False)
    except ValueError:
        name = name.lstrip(".")
        return bool(name) and (host == name or host.endswith("." + name))
