"""Base images kept in the release's own registry, pulled with the release's credentials.

A Dockerfile may build on an image of the team's private registry (``FROM
registry.example/base/node:20``). The engine pulls a missing base with the credentials it is
given, and the classic builder is given only those of the Docker configuration: a release whose
registry credentials come from a file or a variable (a CI runner without ``docker login``) would
see the pull refused. So before a build, every base the engine lacks that lives in the release's
registry is pulled here with the release's credentials. Bases from any other registry are left
to the builder, as ``docker build`` leaves them. Once pulled, the engine holds the base, so the
build's inputs are known and BuildKit can build it (`deploybook.images.build`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import docker
import docker.errors
import requests

from deploybook.errors import BuildError
from deploybook.images.build_inputs import base_images
from deploybook.images.credentials import RegistryAuth, registry_host
from deploybook.images.references import registry_of

__all__ = ["pull_missing_bases"]


def pull_missing_bases(
    client: docker.DockerClient,
    dockerfile: str,
    registry: str,
    auth: RegistryAuth,
    say: Callable[[str], None],
    build_args: Mapping[str, str] | None = None,
) -> list[str]:
    """Pull the bases the ``dockerfile`` text names that are in ``registry`` and not in the engine;
    their names.
    ``build_args`` are the build's, for a ``FROM`` that names its image with an ``ARG``.

    Raises `BuildError` naming the base and the registry when a pull fails.
    """
    host = registry_host(registry).lower()
    wanted = [b for b in base_images(dockerfile, build_args) or () if (registry_of(b) or "").lower() == host]
    pulled = []
    for base in dict.fromkeys(wanted):
        if _held(client, base):
            continue
        say(f"pulling base image {base} with the release's credentials for {registry}")
        try:
            for message in client.api.pull(base, auth_config=auth.docker_auth_config(), stream=True, decode=True):
                _read(message, base, registry, say)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            raise _pull_failed(base, registry, str(getattr(e, "explanation", None) or e)) from None
        pulled.append(base)
    return pulled


def _held(client: docker.DockerClient, image: str) -> bool:
    try:
        client.api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def _read(message: Mapping[str, Any], base: str, registry: str, say: Callable[[str], None]) -> None:
    """One message of the pull: its error raised, its status said (not the progress bars)."""
    if "error" in message or "errorDetail" in message:
        raise _pull_failed(base, registry, (message.get("errorDetail") or {}).get("message") or message["error"])
    if message.get("status") and not message.get("progressDetail"):
        layer = f"{message['id']}: " if message.get("id") else ""
        say(f"{layer}{message['status']}")


def _pull_failed(base: str, registry: str, why: str) -> BuildError:
    return BuildError(
        f"pulling base image {base} from {registry} failed: {why}",
        source=base,
        hint=f"check that {base} exists in {registry} and that the environment's registry credentials may pull it",
    )
