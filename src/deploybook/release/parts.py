"""What the parts of the engine read of the release they work for: one interface, no circle.

The stages, the checks, the session and the record are functions of the release; they see
it through :class:`ReleaseParts`, which :class:`deploybook.release.release.Release` provides,
so none of them imports the module that drives them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from deploybook.cluster.lock import LeaseRenewer, Lock
from deploybook.config.model import Environment, Service
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.manifests.apply import AppliedObject
from deploybook.manifests.source import ManifestCheckout
from deploybook.release.clients import Clients
from deploybook.release.context import RunContext
from deploybook.release.pipeline import Pipeline
from deploybook.release.preflight import ManifestRules, PinnedImage
from deploybook.sources.git import Checkout
from deploybook.verify.containers import ContainerFacts
from deploybook.verify.digests import CachedManifests
from deploybook.verify.namespace import Reader
from deploybook.verify.rollout import RolloutWatcher
from deploybook.verify.workloads import Workload

__all__ = ["ReleaseParts"]


class ReleaseParts(Protocol):
    """The release as the stages, checks, session and record see it."""

    context: RunContext
    clients: Clients
    pipeline: Pipeline | None
    lock: Lock | None
    renewer: LeaseRenewer | None
    checkout: ManifestCheckout | None
    sources: dict[str, Checkout]
    previous: ReleaseRecord | None
    rollback_target: ReleaseRecord | None
    pull_secret: str | None
    pinned_images: dict[str, tuple[PinnedImage, ...]]
    record: ReleaseRecord | None
    running_test: str | None
    stage_outcomes: dict[tuple[str, str], dict[str, Any]]
    exec_slots: threading.BoundedSemaphore
    workload_rules: Callable[[Workload, Service], list[str]] | None
    manifest_rules: ManifestRules | None

    @property
    def env(self) -> Environment: ...
    @property
    def manifest_dir(self) -> Path: ...
    @property
    def watcher(self) -> RolloutWatcher: ...
    @property
    def reader(self) -> Reader: ...
    @property
    def registry_answers(self) -> CachedManifests: ...

    def say(self, text: str) -> None: ...
    def outcome(self, service: str, task: str) -> object | None: ...
    def ref(self, service: str) -> str | None: ...
    def tag_of(self, service: str) -> str: ...
    def source_commit(self, service: str) -> str: ...
    def refs_for(self, images: Iterable[str]) -> dict[str, str]: ...
    def expected(self, service: str) -> tuple[str | None, str | None, str]: ...
    def applied_objects(self, service: str) -> tuple[AppliedObject, ...]: ...
    def third_party(self, service: str) -> tuple[dict[str, str], ...]: ...
    def previous_service(self, name: str) -> ServiceRecord | None: ...
    def resumed_note(self, stage: str) -> str: ...
    def workloads(self, service: Service) -> list[Workload] | None: ...
    def container_facts(self, key: str | None, look: Callable[[], ContainerFacts]) -> ContainerFacts: ...
    def stop_watching(self) -> None: ...
    def ensure_pull_secret(self) -> None: ...
