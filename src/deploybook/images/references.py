"""Image references: ``registry/repository:tag@sha256:...`` taken apart.

One home for every question about a reference: its name without tag and digest, its digest,
its registry and path, whether it belongs to a repository. Pure functions; the only errors
are a repository that names no registry.
"""

from __future__ import annotations

import re

from deploybook.errors import PushError

__all__ = ["digest_of", "image_matches", "image_name", "registry_of", "repository_path", "split_repository"]

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_name(image: str) -> str:
    """An image reference without its digest and tag: ``a/b:1@sha256:..`` -> ``a/b``."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    # A colon after the last slash is a tag; before it, a registry port.
    if colon > last_slash:
        name = name[:colon]
    return name


def digest_of(reference: str) -> str | None:
    """The `sha256:...` digest in an image reference or imageID, if any."""
    found = _DIGEST.search(reference or "")
    return found.group(0) if found else None


def image_matches(image: str, repository: str) -> bool:
    """True when `image` (any registry, tag or digest) is from `repository`, e.g. dx29/web."""
    name = image_name(image)
    return name == repository or name.endswith("/" + repository)


def repository_path(image: str, registry_address: str) -> str:
    """`localhost:5000/dx29/gateway@sha256:..` -> `dx29/gateway` for that registry."""
    name = image_name(image)
    prefix = registry_address.rstrip("/") + "/"
    return name.removeprefix(prefix)


def registry_of(image: str) -> str | None:
    """The registry an image reference names (``localhost:5000/dx29/web`` -> ``localhost:5000``),
    or None for a name without one (``alpine``, ``dx29/web``: Docker Hub's)."""
    first, slash, rest = image.partition("/")
    return first if slash and rest and ("." in first or ":" in first or first == "localhost") else None


def split_repository(repository: str) -> tuple[str, str]:
    """``(registry address, path)`` of a repository such as ``localhost:5000/dx29/gateway``."""
    first, _, rest = repository.partition("/")
    if registry_of(repository) is None:
        raise PushError(
            f"repository {repository!r} names no registry",
            hint="push to a repository that starts with the registry address, e.g. localhost:5000/dx29/gateway",
        )
    return first, rest
