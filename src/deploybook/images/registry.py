"""A small client for the registry's v2 API.

`RegistryClient` answers the one question the runbook asks a registry on its own: which digest
does this tag point at? It speaks both challenge flows a v2 registry may answer with
(``WWW-Authenticate: Basic`` as an htpasswd registry does, ``Bearer`` with realm/service/scope as
ACR and Docker Hub do; without credentials, an anonymous token as public registries give one) and
always verifies TLS, against the given CA file or the system trust.
Its transport is a `requests` adapter, the one seam unit tests replace. Where its credentials
come from is `deploybook.images.credentials`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

from deploybook.errors import RegistryError
from deploybook.http import SnapshotSession
from deploybook.images.credentials import RegistryAuth, registry_host

__all__ = ["MANIFEST_MEDIA_TYPES", "RegistryClient"]

# Accepted manifest types: without them a registry may answer with a converted schema-1
# manifest whose digest differs from the one docker pushed.
MANIFEST_MEDIA_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
_RETRIES = 3
CONNECTIONS = 64
AT_ONCE = 16
"""Requests in flight at once to one registry. Every service's digest check runs in a thread
of its own; unbounded, 100 services opened about 100 connections, each with its own TLS
handshake (bench/, checks at 100 Deployments); bounded, the kept-open ones are reused."""
_BACKOFF_S = 0.5


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """Split ``Bearer realm="...",service="..."`` into the scheme and its parameters."""
    scheme, _, rest = header.strip().partition(" ")
    params = {k.lower(): v for k, v in re.findall(r'(\w+)="([^"]*)"', rest)}
    return scheme.lower(), params


class RegistryClient:
    """The registry's v2 API at ``address`` (``host:port``), over verified TLS.

    ``ca_file`` is the CA bundle to trust instead of the system store. ``transport`` replaces
    the HTTPS adapter of the underlying session (the seam for unit tests).
    """

    def __init__(
        self,
        address: str,
        auth: RegistryAuth | None,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        *,
        transport: BaseAdapter | None = None,
    ) -> None:
        self.address = registry_host(address)
        self.auth = auth
        self.timeout = timeout
        self.base_url = f"https://{self.address}"
        self.verify: str | bool = str(ca_file) if ca_file else True
        # The environment is read once, here: requests would iterate os.environ on every call,
        # from every thread, while pytest changes it (see deploybook.environ).
        self.session = SnapshotSession()
        # As many kept-open connections as threads asking at once (one per service).
        self.session.mount("https://", transport or HTTPAdapter(pool_connections=1, pool_maxsize=CONNECTIONS))
        self._tokens: dict[str, str] = {}
        self._basic: str | None = None  # once a registry asked for Basic, sent up front
        self._slots = threading.BoundedSemaphore(AT_ONCE)

    def __repr__(self) -> str:
        return f"RegistryClient({self.address!r}, auth={self.auth!r})"

    def ping(self) -> None:
        """Check that the registry answers ``/v2/`` with these credentials; raise otherwise."""
        self._request("GET", "/v2/", scope=None)

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The ``sha256:...`` digest of ``repository:reference`` as the registry reports it.

        Asked with HEAD and the Docker v2 and OCI manifest types accepted; if the registry
        leaves out ``Docker-Content-Digest``, the manifest is fetched and hashed.
        """
        path = f"/v2/{repository}/manifests/{reference}"
        scope = f"repository:{repository}:pull"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        response = self._request("HEAD", path, scope=scope, headers=headers, missing_ok=True)
        if response.status_code == 404:
            raise RegistryError(
                f"manifest {repository}:{reference} not found",
                source=self.base_url,
                hint="check the repository and tag, or push the image first",
            )
        digest = response.headers.get("Docker-Content-Digest")
        if digest:
            return digest
        body = self._request("GET", path, scope=scope, headers=headers).content
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def image_config(self, repository: str, reference: str) -> tuple[str, str | None] | None:
        """``(manifest digest, config digest)`` of an image manifest, or None when there is none.

        The config digest is the image id Docker gives the image, so it tells whether the
        registry already holds an image just built; an index (several platforms) has none.
        """
        path = f"/v2/{repository}/manifests/{reference}"
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        response = self._request("GET", path, scope=f"repository:{repository}:pull", headers=headers, missing_ok=True)
        if response.status_code == 404:
            return None
        digest = (
            response.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(response.content).hexdigest()
        )
        try:
            config = response.json().get("config") or {}
        except ValueError:
            config = {}
        return digest, config.get("digest") if isinstance(config, dict) else None

    def request(
        self, method: str, path: str, *, scope: str | None, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> requests.Response:
        """Any v2 API call (``path`` below the registry, e.g. ``/v2/NAME/blobs/uploads/``), with
        authentication for ``scope``; ``kwargs`` go to requests (``data``, ``stream``, ``params``).
        A 404 is returned, every other answer of 400 or more raises RegistryError."""
        return self._request(method, path, scope=scope, headers=headers, missing_ok=True, **kwargs)

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str | None,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
        **kwargs: Any,
    ) -> requests.Response:
        """One API call with authentication on demand; errors name the registry and a fix."""
        url = self.base_url + path
        sent = dict(headers or {})
        if self._basic is not None:
            sent["Authorization"] = self._basic
        elif scope is not None and scope in self._tokens:
            sent["Authorization"] = "Bearer " + self._tokens[scope]
        # A file body (a blob upload) is read by each try: every try sends it from where it began.
        body: Any = kwargs.get("data")
        start = body.tell() if hasattr(body, "seek") and hasattr(body, "tell") else None
        response = self._send(method, url, sent, start, **kwargs)
        if response.status_code == 401:
            sent["Authorization"] = self._authorization(response, scope, url)
            response = self._send(method, url, sent, start, **kwargs)
            if response.status_code == 401:
                raise self._refused(url)
        if response.status_code == 404 and missing_ok:
            return response
        if response.status_code >= 400:
            raise RegistryError(
                f"{method} {url} answered HTTP {response.status_code}: {response.text[:200].strip()}",
                source=self.base_url,
                hint="check the repository name and the registry's logs",
            )
        return response

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], start: int | None, **kwargs: Any
    ) -> requests.Response:
        """Send with up to `_RETRIES` tries on connection errors and 5xx, backing off between;
        a file body is sent from offset ``start`` each time."""
        for attempt in range(1, _RETRIES + 1):
            if start is not None:
                kwargs["data"].seek(start)
            try:
                with self._slots:
                    response = self.session.request(
                        method,
                        url,
                        headers=headers,
                        timeout=self.timeout,
                        verify=self.verify,
                        **kwargs,
                    )
            except requests.exceptions.SSLError as e:
                raise RegistryError(
                    f"TLS verification of {url} failed: {e}",
                    source=self.base_url,
                    hint="trust the registry's CA (registry.ca_file / DEPLOYBOOK_REGISTRY_CA)",
                ) from e
            except requests.exceptions.RequestException as e:
                if attempt == _RETRIES:
                    raise RegistryError(
                        f"registry unreachable after {_RETRIES} tries: {type(e).__name__}: {e}",
                        source=self.base_url,
                        hint="check the registry address and that the registry is running",
                    ) from e
            else:
                if response.status_code < 500 or attempt == _RETRIES:
                    return response
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _authorization(self, response: requests.Response, scope: str | None, url: str) -> str:
        """The Authorization header answering the 401 challenge of ``response``."""
        scheme, params = _parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if self.auth is None and scheme == "bearer" and params.get("realm"):
            # A public registry (Docker Hub, ghcr.io) hands out anonymous pull tokens.
            return "Bearer " + self._token(params, scope or params.get("scope"))
        if self.auth is None:
            raise RegistryError(
                f"{url} requires credentials and none were given",
                source=self.base_url,
                hint="set registry credentials in the environment file or run `docker login`",
            )
        if scheme == "basic":
            raw = f"{self.auth.username}:{self.auth.password}".encode()
            self._basic = "Basic " + base64.b64encode(raw).decode("ascii")
            return self._basic
        if scheme == "bearer" and params.get("realm"):
            return "Bearer " + self._token(params, scope or params.get("scope"))
        raise RegistryError(
            f"{url} answered 401 with an unsupported challenge {scheme or '(none)'!r}",
            source=self.base_url,
            hint="the registry must offer Basic or Bearer authentication",
        )

    def _token(self, params: Mapping[str, str], scope: str | None) -> str:
        """A bearer token from the challenge's realm for ``scope``, cached per scope."""
        key = scope or ""
        if key in self._tokens:
            return self._tokens[key]
        realm = params["realm"]
        if not realm.startswith("https://"):
            raise RegistryError(
                f"token realm {realm} is not HTTPS; credentials are not sent there",
                source=self.base_url,
                hint="configure the registry's token service with HTTPS",
            )
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        basic = (self.auth.username, self.auth.password) if self.auth is not None else None
        response = self._send("GET", realm, {}, None, params=query, auth=basic)
        if response.status_code in (401, 403):
            if self.auth is None:
                raise RegistryError(
                    f"token service {realm} refused an anonymous token for {scope or 'the registry'}",
                    source=self.base_url,
                    hint="the image is private: `docker login` to its registry, or use an image it serves publicly",
                )
            raise self._refused(realm)
        try:
            data = response.json()
            token = str(data.get("token") or data["access_token"])
        except (ValueError, KeyError) as e:
            raise RegistryError(
                f"token service {realm} answered HTTP {response.status_code} without a token",
                source=self.base_url,
            ) from e
        self._tokens[key] = token
        return token

    def _refused(self, url: str) -> RegistryError:
        if self.auth is None:
            return RegistryError(
                f"anonymous access was refused at {url} (the repository is private or does not exist)",
                source=self.base_url,
                hint="check the image name, or `docker login` to its registry",
            )
        return RegistryError(
            f"credentials of {self.auth} were refused at {url}",
            source=self.base_url,
            hint="check the registry username and password (or run `docker login` again)",
        )
