"""Running image digests compared to the recorded ones, and to what the registry serves.

The kubelet reports in `status.containerStatuses[].imageID` the image each container really
runs, as `repo@sha256:...` (containerd) or `docker-pullable://repo@sha256:...` (dockershim).
`running_images` reads them for the pods of a workload; `digest_mismatches` names every pod and
container whose digest differs from the one recorded for its service (from this run, the
release record in the cluster, or `--release FILE`); `registry_problem` asks the registry
whether it still serves that digest, and the release's tag still points at it.

Only reads are made: list pods, HEAD manifests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from deploybook.cluster.watch import list_raw
from deploybook.errors import RegistryError
from deploybook.images.references import digest_of, image_matches

__all__ = [
    "CachedManifests",
    "DigestMismatch",
    "RunningContainer",
    "containers_in",
    "digest_mismatches",
    "pinned_mismatches",
    "registry_problem",
    "running_images",
]


class ManifestSource(Protocol):
    """The part of `deploybook.images.registry.RegistryClient` used here."""

    address: str

    def manifest_digest(self, repository: str, reference: str) -> str: ...


@dataclass(frozen=True)
class RunningContainer:
    """One container of one pod, with the image it asked for and the digest it runs."""

    pod: str
    container: str
    image: str  # spec image, e.g. localhost:5000/dx29/gateway@sha256:...
    image_id: str  # status imageID as the kubelet reports it ("" before the pull)
    digest: str | None  # sha256:... from image_id
    ready: bool


@dataclass(frozen=True)
class DigestMismatch:
    """A container running something else than the release recorded."""

    pod: str
    container: str
    running: str | None
    recorded: str

    def __str__(self) -> str:
        running = self.running or "no digest yet (image not pulled)"
        return f"pod {self.pod} container {self.container}: running {running}, recorded {self.recorded}"


def running_images(
    kube: Any, namespace: str, selector: str, *, image_repository: str | None = None
) -> list[RunningContainer]:
    """Containers of the pods matching `selector` (pods being deleted are left out).

    With `image_repository` (e.g. `dx29/gateway`), only containers whose spec image is from
    that repository are kept, so sidecars of other images are not judged against the service.
    """
    pods, _ = list_raw(kube.core.list_namespaced_pod, namespace, label_selector=selector)
    return containers_in(pods, image_repository=image_repository)


def containers_in(
    pods: Iterable[Mapping[str, Any]], *, image_repository: str | None = None, init: bool = False
) -> list[RunningContainer]:
    """The containers of `pods` (raw JSON) as `running_images` reports them, without a request;
    with ``init``, their init containers first (a native sidecar, a migration step), which ran
    an image too.

    Pods being deleted are left out: they belong to a revision on its way out.
    """
    fields = (("initContainers", "initContainerStatuses"),) if init else ()
    found: list[RunningContainer] = []
    for pod in pods:
        meta = pod.get("metadata", {})
        if meta.get("deletionTimestamp"):
            continue
        spec, status = pod.get("spec", {}), pod.get("status", {})
        specs: dict[str, str] = {}
        statuses: dict[str, Mapping[str, Any]] = {}
        for field, status_field in (*fields, ("containers", "containerStatuses")):
            specs.update((c["name"], c.get("image", "")) for c in spec.get(field) or ())
            statuses.update((c["name"], c) for c in status.get(status_field) or ())
        for name, image in specs.items():
            if image_repository and not image_matches(image, image_repository):
                continue
            status = statuses.get(name, {})
            image_id = status.get("imageID", "")
            found.append(
                RunningContainer(
                    meta.get("name", "?"),
                    name,
                    image,
                    image_id,
                    digest_of(image_id),
                    bool(status.get("ready")),
                )
            )
    return found


class CachedManifests:
    """A ManifestSource that asks the registry once per (repository, reference).

    Many pods and services share a digest; the answer (or the error) of the first HEAD is
    reused, so a checks run sends one request per distinct question. Thread-safe enough for
    a lock-free dict: a race costs one duplicate HEAD, never a wrong answer.
    """

    def __init__(self, source: ManifestSource) -> None:
        self.source = source
        self.address = source.address
        self._answers: dict[tuple[str, str], str | RegistryError] = {}

    def manifest_digest(self, repository: str, reference: str) -> str:
        """The digest the registry serves for `repository:reference`, asked at most once."""
        key = (repository, reference)
        if key not in self._answers:
            try:
                self._answers[key] = self.source.manifest_digest(repository, reference)
            except RegistryError as exc:
                self._answers[key] = exc
        answer = self._answers[key]
        if isinstance(answer, RegistryError):
            raise answer
        return answer


def digest_mismatches(running: Iterable[RunningContainer], recorded: str) -> list[DigestMismatch]:
    """Every container whose running digest is not `recorded`."""
    return [DigestMismatch(c.pod, c.container, c.digest, recorded) for c in running if c.digest != recorded]


def pinned_mismatches(
    pinned: Iterable[Mapping[str, str]], pods: Iterable[Mapping[str, Any]]
) -> tuple[list[RunningContainer], list[DigestMismatch]]:
    """The containers running an image no service builds (``pinned``: record entries with the
    ``pinned`` reference and its ``digest``), and those whose digest is not the pinned one."""
    listed = containers_in(pods, init=True)
    found: list[RunningContainer] = []
    mismatches: list[DigestMismatch] = []
    for entry in pinned:
        running = [c for c in listed if c.image == entry.get("pinned")]
        found += running
        mismatches += digest_mismatches(running, entry.get("digest", ""))
    return found, mismatches


def registry_problem(registry: ManifestSource, repository: str, digest: str, tag: str | None = None) -> str | None:
    """None when the registry serves `digest` (and `tag` points at it); else what is wrong.

    With a tag, one HEAD of the tag answers both questions when it resolves to `digest` (the
    registry serves what the tag names); the digest itself is asked only to say what is wrong.
    """
    tagged: str | RegistryError | None = None
    if tag:
        try:
            tagged = registry.manifest_digest(repository, tag)
        except RegistryError as exc:
            tagged = exc
        if tagged == digest:
            return None
    try:
        served = registry.manifest_digest(repository, digest)
    except RegistryError as exc:
        return f"registry {registry.address} does not serve {repository}@{digest}: {exc}"
    if served != digest:
        return f"registry {registry.address} answers {served} for {repository}@{digest}"
    if isinstance(tagged, RegistryError):
        return f"registry {registry.address} lost tag {repository}:{tag}: {tagged}"
    if tag:
        return f"tag {repository}:{tag} now points at {tagged}, the release recorded {digest}"
    return None
