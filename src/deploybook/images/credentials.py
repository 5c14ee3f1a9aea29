"""Registry credentials, referenced and never stored.

`resolve_credentials` reads the password from an environment variable or a file named in the
environment's YAML, or finds it the way the Docker CLI does in a Docker config file (``auths``,
``credHelpers``, ``credsStore``), which is where ``docker login`` and ``az acr login`` leave it.
This module imports no HTTP client: every run resolves credentials at start-up, and only the
runs that talk to a registry pay for `requests` (see `deploybook.images.registry`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploybook.errors import ConfigError

__all__ = ["RegistryAuth", "docker_config_path", "registry_host", "resolve_credentials"]

_HELPER_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RegistryAuth:
    """A username and password for one registry; the password never shows in repr or str.

    ``source`` says where the password came from (``env VAR``, ``file PATH``, a Docker config
    entry) so an error about refused credentials can say what to fix.
    """

    username: str
    password: str = field(repr=False)
    source: str = ""

    def __str__(self) -> str:
        return f"{self.username} (password from {self.source or 'caller'})"

    def docker_auth_config(self) -> dict[str, str]:
        """The ``auth_config`` mapping docker-py sends to the engine for a push."""
        return {"username": self.username, "password": self.password}


def registry_host(address: str) -> str:
    """``host[:port]`` of a registry address that may carry a scheme or a path."""
    host = re.sub(r"^[a-z]+://", "", address.strip())
    return host.split("/", 1)[0]


def docker_config_path() -> Path:
    """The Docker CLI's config file: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def resolve_credentials(
    address: str,
    *,
    username: str | None = None,
    password_env: str | None = None,
    password_file: str | os.PathLike[str] | None = None,
    docker_config: str | os.PathLike[str] | None = None,
) -> RegistryAuth | None:
    """Credentials for the registry at ``address``, or None if nothing provides any.

    A password reference (``password_env`` or ``password_file``) wins and then needs a
    ``username``. Without one, the Docker config file is consulted (``docker_config`` or the
    CLI's default); an explicitly named config that does not exist is an error, a missing
    default config means anonymous access. Raises `ConfigError` naming the variable, file or
    config entry that is missing or empty.
    """
    if password_env or password_file:
        if not username:
            raise ConfigError(
                f"registry {address}: a password reference needs a username",
                key="registry.username",
                hint="set registry.username in the environment file",
            )
        if password_env:
            return RegistryAuth(username, _password_from_env(password_env, address), f"env {password_env}")
        return RegistryAuth(username, _password_from_file(Path(password_file or ""), address), f"file {password_file}")
    config = Path(docker_config) if docker_config else docker_config_path()
    if not config.is_file():
        if docker_config:
            raise ConfigError(f"Docker config {config} does not exist", hint="run `docker login` or fix the path")
        return None
    return _from_docker_config(config, registry_host(address))


def _password_from_env(name: str, address: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigError(
            f"registry {address}: environment variable {name} is not set or empty",
            hint=f"export {name} with the registry password",
        )
    return value


def _password_from_file(path: Path, address: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as e:
        raise ConfigError(
            f"registry {address}: cannot read password file {path}: {e.strerror}",
            hint="create the file (mode 0600) or fix registry.password_file",
        ) from e
    if not value:
        raise ConfigError(f"registry {address}: password file {path} is empty", hint="write the password into it")
    return value


def _from_docker_config(config: Path, host: str) -> RegistryAuth | None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read Docker config {config}: {e}", hint="fix or remove the file") from e
    helpers: Mapping[str, str] = data.get("credHelpers") or {}
    for key, helper in helpers.items():
        if registry_host(key) == host:
            return _from_helper(helper, key, f"credHelpers[{key}] in {config}")
    if data.get("credsStore"):
        found = _from_helper(data["credsStore"], host, f"credsStore in {config}")
        if found:
            return found
    for key, entry in (data.get("auths") or {}).items():
        if registry_host(key) == host and isinstance(entry, dict) and entry.get("auth"):
            return _decode_auth(entry["auth"], f"auths[{key}] in {config}")
    return None


def _decode_auth(encoded: str, where: str) -> RegistryAuth:
    try:
        user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    except ValueError as e:
        raise ConfigError(f"{where}: 'auth' is not base64 of user:password", hint="run `docker login` again") from e
    if not user or not password:
        raise ConfigError(f"{where}: 'auth' lacks a username or password", hint="run `docker login` again")
    return RegistryAuth(user, password, where)


def _from_helper(helper: str, server: str, where: str) -> RegistryAuth | None:
    """Ask ``docker-credential-<helper> get`` the way the Docker CLI does (server on stdin)."""
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=_HELPER_TIMEOUT_S, check=False
        )
    except FileNotFoundError as e:
        raise ConfigError(
            f"{where} names {program}, which is not installed", hint=f"install {program} or edit the config"
        ) from e
    except subprocess.TimeoutExpired as e:
        raise ConfigError(f"{program} get did not answer within {_HELPER_TIMEOUT_S:.0f} s ({where})") from e
    if done.returncode != 0:
        if "credentials not found" in (done.stdout + done.stderr).lower():
            return None
        raise ConfigError(f"{program} get failed for {server} ({where}): {done.stderr.strip() or done.stdout.strip()}")
    try:
        answer = json.loads(done.stdout)
        return RegistryAuth(answer["Username"], answer["Secret"], f"{program} ({where})")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{program} get answered something else than Username/Secret JSON ({where})") from e
