"""What a build is made from, as one digest, so an unchanged service is not built again.

A build is decided by its context (the files ``docker build`` sends the engine, after
``.dockerignore``: names, modes, owners, links and bytes, not times), the Dockerfile's path
in it, the build args, the labels and the base images the engine holds. `build_inputs`
hashes exactly those; the digest goes on the image as the label ``io.deploybook.build-input``.
When the image the tag already names carries the same digest, a build would only walk the
cache to that same image, so it is kept as it is (see `deploybook.images.build.build_image`).
Only the tag is looked at: the version label is an input, so an image of the same inputs has
that tag, and asking the engine for one image costs the same however many it holds (a label
search reads every image's configuration: 0.3 s at 600 images).

Where the inputs cannot be known before the engine runs, there is no digest and the build
runs as usual: a Dockerfile outside the context, a ``FROM`` that uses a build arg, an ``ADD``
of a URL or a git repository, or a base image the engine would have to pull.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Mapping
from typing import IO, Any

import docker.errors

__all__ = ["BUILD_INPUT_LABEL", "base_images", "build_inputs", "image_built_from"]

BUILD_INPUT_LABEL = "io.deploybook.build-input"
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.IGNORECASE)
_COPY_FROM = re.compile(r"^\s*COPY\s+.*--from=(\S+)", re.IGNORECASE)
_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S*))?\s*$", re.IGNORECASE)
_VARIABLE = re.compile(r"\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")
_REMOTE_ADD = re.compile(r"^\s*ADD\s+.*(?:https?://|git@|\.git\b)", re.IGNORECASE)


def base_images(dockerfile: str, build_args: Mapping[str, str] | None = None) -> list[str] | None:
    """The images a Dockerfile builds on (``FROM``, ``COPY --from``), or None when unknowable.

    Stage names and ``scratch`` are not images. A ``FROM`` may use the ``ARG``s declared before
    the first ``FROM`` (``$NAME``, ``${NAME}``, ``${NAME:-default}``), each the build arg of that
    name when one is given, else its default. Any other ``$`` in a reference, and a remote
    ``ADD``, which fetches what no digest here can cover, give None.
    """
    stages: set[str] = set()
    found: list[str] = []
    global_args: dict[str, str | None] = {}
    in_stage = False  # past the first FROM: an ARG there is the stage's, not for FROM lines
    for line in _logical_lines(dockerfile):
        if _REMOTE_ADD.match(line):
            return None
        if not in_stage and (declared := _ARG.match(line)):
            name, default = declared.group(1), declared.group(2)
            given = (build_args or {}).get(name)
            global_args[name] = given if given is not None else _unquote(default)
            continue
        match = _FROM.match(line) or _COPY_FROM.match(line)
        if not match:
            continue
        in_stage = True
        image = match.group(1)
        if "$" in image:
            if match.re is not _FROM or (expanded := _expand(image, global_args)) is None:
                return None
            image = expanded
        if image.lower() != "scratch" and image not in stages and not image.isdigit():
            found.append(image)
        alias = match.group(2) if match.re is _FROM else None
        if alias:
            stages.add(alias)
    return found


def _unquote(value: str | None) -> str | None:
    if value is not None and len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _expand(reference: str, args: Mapping[str, str | None]) -> str | None:
    """``reference`` with its ``ARG``s put in, or None when one has no value or the form is unknown."""
    unknown = False

    def value(match: re.Match[str]) -> str:
        nonlocal unknown
        name = match.group(1) or match.group(2)
        got = args.get(name)
        if not got and match.group(3) is not None:
            return match.group(3)
        if not got:
            unknown = True
        return got or ""

    expanded = _VARIABLE.sub(value, reference)
    return None if unknown or "$" in expanded or not expanded else expanded


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\r?\n", " ", text)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def build_inputs(
    client: docker.DockerClient,
    archive: IO[bytes],
    *,
    dockerfile: str,
    dockerfile_in_archive: str,
    build_args: Mapping[str, str],
    labels: Mapping[str, str],
    target: str | None = None,
) -> str | None:
    """``sha256:...`` of everything the build is made from, or None when that cannot be known
    (``dockerfile`` is the Dockerfile's text)."""
    bases = base_images(dockerfile, build_args)
    if bases is None:
        return None
    base_ids = {}
    for image in bases:
        try:
            base_ids[image] = client.api.inspect_image(image)["Id"]
        except docker.errors.ImageNotFound:
            return None  # the engine pulls it during the build: what it gets is not known yet
    digest = hashlib.sha256()
    settings = {
        "dockerfile": dockerfile_in_archive,
        "build_args": dict(sorted(build_args.items())),
        "target": target,
        "labels": dict(sorted(labels.items())),
        "bases": base_ids,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    _hash_members(archive, digest)
    return f"sha256:{digest.hexdigest()}"


def _hash_members(archive: IO[bytes], digest: Any) -> None:
    """Every entry of the context archive: name, type, mode, owner, link target and bytes.

    Modification times are left out, as the engine's own build cache leaves them out: a fresh
    checkout of the same files is the same input.
    """
    archive.seek(0)
    with tarfile.open(fileobj=archive, mode="r:") as tar:
        for member in tar:
            head = [member.name, member.type.decode(), member.mode, member.uid, member.gid, member.linkname]
            digest.update(json.dumps([*head, member.size]).encode())
            content = tar.extractfile(member) if member.isfile() else None
            while content is not None and (block := content.read(1 << 20)):
                digest.update(block)
    archive.seek(0)


def image_built_from(client: docker.DockerClient, inputs: str, tag: str) -> str | None:
    """The id of the image ``tag`` names when it was built from these inputs, else None."""
    try:
        image: dict[str, Any] = client.api.inspect_image(tag)
    except docker.errors.ImageNotFound:
        return None
    labels = (image.get("Config") or {}).get("Labels") or {}
    return str(image["Id"]) if labels.get(BUILD_INPUT_LABEL) == inputs else None
