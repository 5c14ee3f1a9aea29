"""Image push through the Docker engine, with the digest confirmed by the registry.

`push_image` pushes with explicit credentials, takes the digest from the push's own output
and then asks the registry's v2 API for the tag's digest on its own: the two must agree.
A refused or unreachable registry is one `PushError` naming the registry address.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from deploybook.errors import PushError, RegistryError
from deploybook.images.build import LineCallback, emit_line
from deploybook.images.credentials import RegistryAuth, registry_host
from deploybook.images.references import split_repository
from deploybook.images.registry import RegistryClient

__all__ = ["PushResult", "push_image", "push_refused"]

_PUSH_TRIES = 3
_PUSH_BACKOFF_S = 1.0
_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_REFUSED = ("unauthorized", "authentication required", "no basic auth credentials", "denied")
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "dial tcp", "connection reset")


@dataclass(frozen=True)
class PushResult:
    """What a push produced: ``ref`` is ``repository@sha256:...``, the reference to deploy."""

    ref: str
    digest: str
    log: str = field(repr=False)
    repository: str = ""
    tag: str = ""
    seconds: float = 0.0


def push_image(
    client: docker.DockerClient,
    *,
    repository: str,
    tag: str,
    auth: RegistryAuth | None,
    on_line: LineCallback | None = None,
    source: str | None = None,
    registry: RegistryClient | None = None,
    ca_file: str | Path | None = None,
) -> PushResult:
    """Push ``repository:tag`` with ``auth`` and return its digest, confirmed by the registry.

    ``source`` (an image id or reference) is tagged as ``repository:tag`` first. The digest
    comes from the push's output and is checked against the registry's v2 API through
    ``registry`` (or a `RegistryClient` made from the repository's address, ``auth`` and
    ``ca_file``): a mismatch is a `PushError`. The registry is pinged first (credentials,
    verified TLS). Refused credentials and an unreachable registry raise one `PushError`
    naming the registry; connection failures are tried `_PUSH_TRIES` times.
    """
    address, path = split_repository(repository)
    started = time.monotonic()
    registry = registry or RegistryClient(address, auth, ca_file=ca_file)
    _ping(registry, repository, tag)
    if source:
        _tag(client, source, repository, tag)
    lines: list[str] = []
    digest = ""
    for attempt in range(1, _PUSH_TRIES + 1):
        try:
            digest = _push_once(client, repository, tag, auth, lines, on_line)
            break
        except _Retryable as e:
            if attempt == _PUSH_TRIES:
                raise _unreachable(address, repository, tag, str(e)) from e
            time.sleep(_PUSH_BACKOFF_S * 2 ** (attempt - 1))
    _confirm_digest(registry, path, tag, digest)
    return PushResult(f"{repository}@{digest}", digest, "\n".join(lines), repository, tag, time.monotonic() - started)


def _ping(registry: RegistryClient, repository: str, tag: str) -> None:
    """Ask the registry's ``/v2/`` with the credentials and verified TLS before pushing.

    The engine has trust and retry rules of its own (it would push over a CA the runbook
    does not trust, and retry a failing registry for a minute); asking first means a
    wrong CA, refused credentials or a failing registry stop the push before any layer
    is sent, within seconds.
    """
    try:
        registry.ping()
    except RegistryError as e:
        raise push_refused(e, repository, tag) from e


def push_refused(error: RegistryError, repository: str, tag: str) -> PushError:
    """The push's own error for a registry that failed a question asked before pushing."""
    cause = error.__cause__
    if isinstance(cause, requests.exceptions.RequestException) and not isinstance(cause, requests.exceptions.SSLError):
        return _unreachable(repository.split("/", 1)[0], repository, tag, _connection_problem(cause))
    return PushError(f"not pushing {repository}:{tag}: {error.message}", source=error.source, hint=error.hint)


def _connection_problem(error: BaseException) -> str:
    """The gist of a failed connection (requests wraps it in three layers of reprs)."""
    text = str(error)
    for known in ("connection refused", "timed out", "connection reset", "name or service not known"):
        if known in text.lower():
            return known
    return type(error).__name__


class _Retryable(Exception):
    """A push failure worth another try (the registry could not be reached)."""


def _tag(client: docker.DockerClient, source: str, repository: str, tag: str) -> None:
    try:
        client.api.tag(source, repository, tag)
    except docker.errors.DockerException as e:
        raise PushError(f"cannot tag {source} as {repository}:{tag}: {e}", hint="build the image first") from e


def _push_once(
    client: docker.DockerClient,
    repository: str,
    tag: str,
    auth: RegistryAuth | None,
    lines: list[str],
    on_line: LineCallback | None,
) -> str:
    """One push; returns the digest it reported. Raises `_Retryable` or `PushError`."""
    auth_config = auth.docker_auth_config() if auth else None
    try:
        stream = client.api.push(repository, tag=tag, auth_config=auth_config, stream=True, decode=True)
        return _read_push_stream(stream, repository, tag, auth, lines, on_line)
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        _classify_push_failure(str(e), repository, tag, auth)
        raise PushError(
            f"docker push of {repository}:{tag} failed: {e}",
            source=repository,
            hint="check that the Docker engine (DOCKER_HOST) is running",
        ) from e


def _read_push_stream(
    stream: Iterable[Mapping[str, Any]],
    repository: str,
    tag: str,
    auth: RegistryAuth | None,
    lines: list[str],
    on_line: LineCallback | None,
) -> str:
    digest = ""
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            message = (chunk.get("errorDetail") or {}).get("message") or str(chunk.get("error"))
            emit_line(lines, on_line, f"ERROR: {message}")
            _classify_push_failure(message, repository, tag, auth)
            raise PushError(f"docker push of {repository}:{tag} failed: {message}", source=repository)
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and aux.get("Digest"):
            digest = str(aux["Digest"])
        status = chunk.get("status")
        if status and not chunk.get("progressDetail"):
            line = f"{chunk['id']}: {status}" if chunk.get("id") else str(status)
            emit_line(lines, on_line, line)
            found = _DIGEST.search(str(status))
            digest = digest or (found.group(1) if found else "")
    if not digest:
        raise PushError(f"docker push of {repository}:{tag} reported no digest", source=repository)
    return digest


def _classify_push_failure(message: str, repository: str, tag: str, auth: RegistryAuth | None) -> None:
    """Raise the clear error a known failure deserves; return for anything else."""
    lowered = message.lower()
    address = repository.split("/", 1)[0]
    if any(word in lowered for word in _REFUSED):
        who = f"the credentials of {auth}" if auth else "anonymous access"
        raise PushError(
            f"registry {address} refused {who} when pushing {repository}:{tag}: {message}",
            source=f"https://{registry_host(address)}",
            hint="check the registry username and password (or run `docker login` again)",
        )
    if any(word in lowered for word in _UNREACHABLE):
        raise _Retryable(message)


def _unreachable(address: str, repository: str, tag: str, message: str) -> PushError:
    return PushError(
        f"registry {address} unreachable when pushing {repository}:{tag} (tried {_PUSH_TRIES} times): {message}",
        source=f"https://{registry_host(address)}",
        hint="check the registry address in the environment file and that the registry is running",
    )


def _confirm_digest(registry: RegistryClient, path: str, tag: str, pushed: str) -> None:
    """The registry's own answer for the tag must be the digest the push reported."""
    try:
        seen = registry.manifest_digest(path, tag)
    except RegistryError as e:
        raise PushError(
            f"pushed {path}:{tag} but could not confirm its digest: {e.message}",
            source=e.source,
            hint=e.hint,
        ) from e
    if seen != pushed:
        raise PushError(
            f"digest mismatch for {path}:{tag}: the push reported {pushed}, the registry answers {seen}",
            source=registry.base_url,
            hint="another push may have moved the tag; push again with a unique tag",
        )
