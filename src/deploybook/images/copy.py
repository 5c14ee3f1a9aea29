"""An image copied by digest from one registry to another, through their v2 APIs alone.

Production promotes the images test ran, and may keep them in a registry of its own. The
copy is what the distribution API offers for it: every blob the target lacks is read from
the source, its sha256 checked as it streams, and uploaded (``POST .../blobs/uploads/``, then
``PUT ?digest=``), or mounted when both repositories are on one registry; then the
manifest's exact bytes are ``PUT`` by digest, so the target computes the very same digest.
An index (several platforms) copies each of its manifests first; the tags asked for are then
put with the same bytes, so they name the same digest in the target. No Docker engine, no
pull, no rebuild. The digest is proven identical three times: the source's bytes hash to it, the
target's answer to the ``PUT`` names it, and a ``HEAD`` by digest afterwards returns it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from typing import IO

from deploybook.errors import RegistryError
from deploybook.images.registry import MANIFEST_MEDIA_TYPES, RegistryClient

__all__ = ["CopyResult", "copy_image"]

_INDEX_TYPES = (
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
)
_SPOOL_BYTES = 32 * 1024 * 1024  # blobs above this go to a temporary file, not memory
_CHUNK = 1024 * 1024


@dataclass
class CopyResult:
    """What a copy did: blobs sent, blobs the target had or mounted, manifests put."""

    digest: str
    source: str
    target: str
    tags: tuple[str, ...] = ()
    copied: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    bytes_sent: int = 0

    def summary(self) -> str:
        """One line for the log and the report."""
        return (
            f"{self.source}@{self.digest} -> {self.target}: {len(self.manifests)} manifest(s) put by digest, "
            f"{len(self.copied)} blob(s) copied ({self.bytes_sent} bytes), {len(self.mounted)} mounted, "
            f"{len(self.present)} already there" + (f"; tagged {', '.join(self.tags)}" if self.tags else "")
        )


def copy_image(
    source: RegistryClient,
    source_path: str,
    target: RegistryClient,
    target_path: str,
    digest: str,
    *,
    tags: tuple[str, ...] = (),
) -> CopyResult:
    """Copy ``source_path@digest`` to ``target_path`` on ``target``, and point ``tags`` at it;
    RegistryError when any digest differs or a registry refuses."""
    result = CopyResult(digest, f"{source.address}/{source_path}", f"{target.address}/{target_path}", tags)
    body, media_type = _copy_manifest(source, source_path, target, target_path, digest, result)
    for tag in tags:
        _put_manifest(target, target_path, tag, body, media_type, digest)
    for reference in (digest, *tags):
        seen = target.manifest_digest(target_path, reference)
        if seen != digest:
            raise RegistryError(
                f"after the copy, {result.target}:{reference} answers digest {seen}, not {digest}",
                source=target.base_url,
                hint="the target registry rewrote the manifest; promote to a registry that keeps it as put",
            )
    return result


def _scope(path: str, push: bool = False) -> str:
    return f"repository:{path}:pull,push" if push else f"repository:{path}:pull"


def _copy_manifest(
    source: RegistryClient, source_path: str, target: RegistryClient, target_path: str, digest: str, result: CopyResult
) -> tuple[bytes, str]:
    body, media_type = _get_manifest(source, source_path, digest)
    document = json.loads(body)
    if media_type in _INDEX_TYPES or document.get("mediaType") in _INDEX_TYPES:
        for child in document.get("manifests") or ():
            _copy_manifest(source, source_path, target, target_path, str(child["digest"]), result)
    else:
        blobs = [document.get("config") or {}, *(document.get("layers") or ())]
        for blob in blobs:
            if blob.get("digest"):
                _copy_blob(source, source_path, target, target_path, str(blob["digest"]), result)
    _put_manifest(target, target_path, digest, body, media_type, digest)
    result.manifests.append(digest)
    return body, media_type


def _get_manifest(client: RegistryClient, path: str, digest: str) -> tuple[bytes, str]:
    """The manifest's exact bytes and media type, checked to hash to ``digest``."""
    response = client.request(
        "GET", f"/v2/{path}/manifests/{digest}", scope=_scope(path), headers={"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
    )
    if response.status_code == 404:
        raise RegistryError(
            f"{client.address}/{path}@{digest} is not in the registry",
            source=client.base_url,
            hint="the image was deleted from the source registry since the release; release it again there",
        )
    body = response.content
    _check_digest(body, digest, f"manifest {client.address}/{path}@{digest}", client)
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    return body, media_type or str(json.loads(body).get("mediaType") or MANIFEST_MEDIA_TYPES[0])


def _put_manifest(client: RegistryClient, path: str, reference: str, body: bytes, media_type: str, digest: str) -> None:
    """PUT the manifest's bytes under ``reference`` (its digest, or a tag); the answer must be ``digest``."""
    response = client.request(
        "PUT",
        f"/v2/{path}/manifests/{reference}",
        scope=_scope(path, push=True),
        headers={"Content-Type": media_type},
        data=body,
    )
    answered = response.headers.get("Docker-Content-Digest")
    if response.status_code == 404 or (answered and answered != digest):
        raise RegistryError(
            f"PUT of manifest {client.address}/{path}:{reference} answered HTTP {response.status_code}, "
            f"digest {answered}",
            source=client.base_url,
        )


def _copy_blob(
    source: RegistryClient, source_path: str, target: RegistryClient, target_path: str, digest: str, result: CopyResult
) -> None:
    if _has_blob(target, target_path, digest):
        result.present.append(digest)
        return
    if source.address == target.address and _mount(target, target_path, source_path, digest):
        result.mounted.append(digest)
        return
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        size = _download(source, source_path, digest, spool)
        spool.seek(0)
        _upload(target, target_path, digest, spool, size)
    result.copied.append(digest)
    result.bytes_sent += size


def _has_blob(client: RegistryClient, path: str, digest: str) -> bool:
    response = client.request("HEAD", f"/v2/{path}/blobs/{digest}", scope=_scope(path, push=True))
    return response.status_code == 200


def _mount(client: RegistryClient, path: str, from_path: str, digest: str) -> bool:
    response = client.request(
        "POST",
        f"/v2/{path}/blobs/uploads/",
        scope=_scope(path, push=True),
        params={"mount": digest, "from": from_path},
    )
    return response.status_code == 201


def _download(client: RegistryClient, path: str, digest: str, into: IO[bytes]) -> int:
    """Stream the blob into ``into``, hashing as it comes; its sha256 must be ``digest``."""
    response = client.request("GET", f"/v2/{path}/blobs/{digest}", scope=_scope(path), stream=True)
    if response.status_code == 404:
        raise RegistryError(f"blob {digest} of {client.address}/{path} is missing", source=client.base_url)
    hasher, size = hashlib.sha256(), 0
    for chunk in response.iter_content(_CHUNK):
        hasher.update(chunk)
        into.write(chunk)
        size += len(chunk)
    _check_digest(None, digest, f"blob {client.address}/{path}@{digest}", client, seen="sha256:" + hasher.hexdigest())
    return size


def _upload(client: RegistryClient, path: str, digest: str, body: IO[bytes], size: int) -> None:
    started = client.request("POST", f"/v2/{path}/blobs/uploads/", scope=_scope(path, push=True))
    location = _upload_path(client, started.headers.get("Location", ""))
    separator = "&" if "?" in location else "?"
    done = client.request(
        "PUT",
        f"{location}{separator}digest={digest}",
        scope=_scope(path, push=True),
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        data=body,
    )
    if done.status_code != 201:
        raise RegistryError(
            f"upload of blob {digest} to {client.address}/{path} answered HTTP {done.status_code}",
            source=client.base_url,
        )


def _upload_path(client: RegistryClient, location: str) -> str:
    """The upload URL as a path of this registry (credentials go nowhere else)."""
    if location.startswith(client.base_url + "/"):
        return location[len(client.base_url) :]
    if location.startswith("/"):
        return location
    raise RegistryError(
        f"the registry sent the upload to {location or '(no Location)'}, not to itself",
        source=client.base_url,
        hint="deploybook uploads only to the registry it authenticated with",
    )


def _check_digest(body: bytes | None, digest: str, what: str, client: RegistryClient, seen: str | None = None) -> None:
    seen = seen or "sha256:" + hashlib.sha256(body or b"").hexdigest()
    if seen != digest:
        raise RegistryError(f"{what} hashes to {seen}", source=client.base_url, hint="the registry served other bytes")
