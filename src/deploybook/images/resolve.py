"""Images no service builds, pinned to the digest their registry serves now.

A manifest may run a sidecar or a vendor image (``redis:7``, ``localhost:5000/vendor/proxy:1.2``)
next to the images the release builds. `parse_image` takes such a reference apart the way the
Docker CLI does (``redis:7`` is ``registry-1.docker.io/library/redis:7``; a missing tag is
``latest``); `ImageResolver` asks the image's registry for the digest of the tag (a HEAD of the
manifest with the OCI index, Docker manifest list and single-manifest types accepted, as
`deploybook.images.registry` sends it) and gives the pinned reference ``name@sha256:...`` the
manifest is rendered with. A reference already written with ``@sha256:`` keeps its digest; the
registry is asked whether it serves it, so a typo is found before anything is applied.

Credentials, per registry host: the release's own credentials and CA for the release's registry;
else the Docker configuration's entry for that host (``auths``, ``credHelpers``, ``credsStore``);
else none, so a public registry's Bearer challenge is answered with an anonymous token. TLS is
always verified. Every answer is kept for the run: two services using ``redis:7`` ask once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from deploybook.errors import RegistryError
from deploybook.images.credentials import RegistryAuth, registry_host, resolve_credentials
from deploybook.images.references import digest_of

__all__ = [
    "DOCKER_HUB",
    "ImageResolver",
    "ImageSource",
    "ResolvedImage",
    "Resolver",
    "client_factory",
    "parse_image",
]

DOCKER_HUB = "registry-1.docker.io"
"""Where the Docker CLI pulls ``docker.io`` images from (the name in a reference is docker.io)."""
_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


class ManifestDigests(Protocol):
    """The part of `deploybook.images.registry.RegistryClient` the resolver asks."""

    def manifest_digest(self, repository: str, reference: str) -> str: ...


@dataclass(frozen=True)
class ImageSource:
    """An image reference taken apart: where to ask (``registry``), what, and which tag or digest.

    ``named`` is the registry as a reference names it (``docker.io`` for Docker Hub), ``registry``
    the host the v2 API is asked at (``registry-1.docker.io``).
    """

    named: str
    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """``named/repository``: the image's full name without tag or digest."""
        return f"{self.named}/{self.repository}"

    @property
    def reference(self) -> str:
        """The full reference as resolved: ``name:tag``, ``name@digest`` or both."""
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}{tag}{digest}"


def parse_image(image: str) -> ImageSource:
    """``image`` as the Docker CLI reads it: registry (default Docker Hub), path, tag (default
    ``latest`` unless a digest is given), digest. Raises RegistryError for a malformed one."""
    text = image.strip()
    name, _, digest_part = text.partition("@")
    digest = digest_of(digest_part) if digest_part else None
    if (digest_part and digest != digest_part) or not name or any(c.isspace() for c in text):
        raise RegistryError(
            f"image reference {image!r} is malformed",
            hint="write it as [REGISTRY/]PATH[:TAG][@sha256:DIGEST]",
        )
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        named, path = first, rest
    else:
        named, path = "docker.io", name
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if named in _HUB_NAMES:
        named = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    if not path or path != path.lower() or (tag is not None and not tag):
        raise RegistryError(
            f"image reference {image!r} is malformed (a repository path is lower case)",
            hint="write it as [REGISTRY/]PATH[:TAG][@sha256:DIGEST]",
        )
    registry = DOCKER_HUB if named == "docker.io" else named
    return ImageSource(named, registry, path, tag if tag or digest else "latest", digest)


@dataclass(frozen=True)
class ResolvedImage:
    """An image no service builds, as written and as pinned, and where its digest came from."""

    written: str
    reference: str  # the full reference asked: registry/path:tag (or @digest)
    registry: str  # the host whose v2 API answered
    digest: str
    pinned: str  # what the rendered manifest runs: name@sha256:...
    how: str  # "tag resolved" or "digest confirmed"

    def to_dict(self) -> dict[str, str]:
        """The JSON form the release record keeps."""
        return {
            "written": self.written,
            "reference": self.reference,
            "registry": self.registry,
            "digest": self.digest,
            "pinned": self.pinned,
            "how": self.how,
        }


class Resolver(Protocol):
    """What pins an image no service builds: its registry (``ImageResolver``), or a promoted record."""

    def resolve(self, image: str) -> ResolvedImage: ...


class ImageResolver:
    """Resolves images to digests, once per reference; ``client_for(host)`` gives each registry's
    v2 API. Thread-safe: the preflight resolves the services' images side by side."""

    def __init__(self, client_for: Callable[[str], ManifestDigests]) -> None:
        self._client_for = client_for
        self._answers: dict[str, ResolvedImage | RegistryError] = {}
        self._lock = threading.Lock()

    def resolve(self, image: str) -> ResolvedImage:
        """The pinned form of ``image``; RegistryError says what the registry answered."""
        with self._lock:
            answer = self._answers.get(image)
        if answer is None:
            try:
                answer = self._ask(image)
            except RegistryError as e:
                answer = e
            with self._lock:
                self._answers[image] = answer
        if isinstance(answer, RegistryError):
            raise answer
        return answer

    def _ask(self, image: str) -> ResolvedImage:
        source = parse_image(image)
        client = self._client_for(source.registry)
        asked = source.digest or source.tag or "latest"
        served = client.manifest_digest(source.repository, asked)
        if source.digest and served != source.digest:
            raise RegistryError(
                f"{source.registry} answers {served} for {source.name}@{source.digest}",
                source=f"https://{source.registry}",
                hint="write the digest the registry serves, or a tag",
            )
        how = "digest confirmed" if source.digest else "tag resolved"
        return ResolvedImage(image, source.reference, source.registry, served, f"{source.name}@{served}", how)


def client_factory(
    make_client: Callable[[str, RegistryAuth | None, str | None], Any],
    *,
    release_registry: str,
    release_auth: RegistryAuth | None,
    release_ca: str | None,
    docker_config: str | None = None,
) -> Callable[[str], Any]:
    """``host -> client`` for the resolver, one client per host, with the credentials the module
    docstring describes. ``make_client(host, auth, ca_file)`` builds one (a RegistryClient)."""
    made: dict[str, Any] = {}
    lock = threading.Lock()
    own = registry_host(release_registry)

    def client_for(host: str) -> Any:
        with lock:
            if host not in made:
                if host == own:
                    made[host] = make_client(host, release_auth, release_ca)
                else:
                    # Docker Hub's entry in a Docker config is keyed by its index, not its API host.
                    key = "index.docker.io" if host == DOCKER_HUB else host
                    made[host] = make_client(host, resolve_credentials(key, docker_config=docker_config), None)
            return made[host]

    return client_for
