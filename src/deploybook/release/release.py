"""One run of deploybook, from its first cluster contact to its record: the engine's front door.

The pytest layer makes a :class:`Release` from a :class:`~deploybook.release.context.RunContext`,
``open()``s it at session start (cluster, promotion, namespace, lock, manifests, preflight),
``start()``s it once the tests are collected (the pipeline runs the tasks of the tests that
were selected, every service side by side), lets each test ``wait()`` for its task, and
``close()``s it at the end (record, rollback, lock). The stages (``deploybook.release.stages``)
and checks (``deploybook.release.checking``) ask it for what they share: the clients, the
manifests, the digests other services pushed, the workloads a service deployed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from deploybook.cluster.lock import LeaseRenewer, Lock
from deploybook.config.model import Environment, Service
from deploybook.errors import RenderError
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.manifests.apply import AppliedObject
from deploybook.manifests.pull_secret import ensure_pull_secret
from deploybook.manifests.source import ManifestCheckout
from deploybook.release import checking, session, stages
from deploybook.release.clients import Clients
from deploybook.release.context import RunContext
from deploybook.release.names import STAGES
from deploybook.release.pipeline import Pipeline, Skipped
from deploybook.release.preflight import ManifestRules, PinnedImage
from deploybook.release.recording import recorded_object
from deploybook.sources.git import Checkout
from deploybook.verify.containers import ContainerFacts, FactsCache
from deploybook.verify.digests import CachedManifests
from deploybook.verify.namespace import LiveReader, Reader, SnapshotReader
from deploybook.verify.rollout import RolloutWatcher
from deploybook.verify.workloads import Workload, workloads_running

__all__ = ["Release"]

Say = Callable[[str], None]
TASKS: Mapping[str, Callable[[Any, Service, Callable[[object], None]], object]] = {
    "build": stages.build,
    "push": stages.push,
    "apply": stages.apply,
    **checking.CHECKS,
}


class Release:
    """The engine of one run; see the module docstring for its life."""

    def __init__(self, context: RunContext, *, say: Say, clients: Clients | None = None) -> None:
        self.context = context
        self.say = say
        # Checks alone read with the environment's read-only context unless told another.
        reading = context.env.cluster.read_only_context if context.mode == "checks" else None
        self.clients = clients or Clients(context.env, kube_context=context.options.kube_context or reading)
        self.pipeline: Pipeline | None = None
        self.lock: Lock | None = None
        self.renewer: LeaseRenewer | None = None
        self.checkout: ManifestCheckout | None = None
        self.sources: dict[str, Checkout] = {}
        self.previous: ReleaseRecord | None = None
        self.rollback_target: ReleaseRecord | None = None
        self.pull_secret: str | None = None
        # Per service, the images no service builds, pinned by the preflight (deploybook.images.resolve).
        self.pinned_images: dict[str, tuple[PinnedImage, ...]] = {}
        self.record: ReleaseRecord | None = None
        self.stage_outcomes: dict[tuple[str, str], dict[str, Any]] = {}
        self.running_test: str | None = None
        # A team's own rules per workload (the pytest_deploybook_check_workload hook), set by the pytest
        # layer when a team implements it: (workload, service) -> problems.
        self.workload_rules: Callable[[Workload, Service], list[str]] | None = None
        # A team's own pre-apply policies (the pytest_deploybook_check_manifests hook), called in the preflight.
        self.manifest_rules: ManifestRules | None = None
        self.exec_slots = threading.BoundedSemaphore(checking.EXEC_AT_ONCE)
        self._facts = FactsCache()
        self._found: dict[str, list[Workload]] = {}  # checks alone: each service's workloads, found once
        self._shared: dict[str, object] = {}
        self._shared_lock = threading.RLock()

    @property
    def env(self) -> Environment:
        """The environment released to or checked."""
        return self.context.env

    # ------------------------------------------------------------------ the run

    def open(self) -> None:
        """The first cluster contact: see ``deploybook.release.session.open_release``."""
        session.open_release(self)

    def start(self, chains: Mapping[str, Sequence[str]]) -> None:
        """Run ``chains`` (service -> the tasks of its selected tests, in order)."""
        chains = {s: tuple(t) for s, t in chains.items() if t}
        # Checks alone already run every service's chain at once; threads per check would only
        # contend (100 Deployments: 400 more threads).
        side_by_side = checking.AFTER_ROLLOUT if self.context.mode == "runbook" else ()
        self.pipeline = Pipeline(chains, self._run, side_by_side=side_by_side)
        self.pipeline.start()

    def _run(self, service: str, task: str) -> object:
        assert self.pipeline is not None
        return TASKS[task](self, self.env.service(service), self.pipeline.say(service, task))

    def wait(self, service: str, task: str, *, idle: Callable[[], None] | None = None) -> object:
        """The outcome of ``task`` of ``service``; raises what the task raised."""
        if self.pipeline is None or not self.pipeline.has(service, task):
            return Skipped(f"{task} of {service} is not part of this run")
        return self.pipeline.wait(service, task, idle=idle)

    def close(self, outcome: str) -> ReleaseRecord | None:
        """Stop the pipeline, write the record with ``outcome`` (passed, failed, interrupted;
        rolled-back when a rollback restored the last passed release), free the lock."""
        return session.close_release(self, outcome)

    def abandon(self) -> None:
        """Free the lock of a run that ends before it could close."""
        session.abandon(self)

    def ensure_pull_secret(self) -> None:
        """The registry's pull secret in the namespace, written once, just before the first apply.

        Not at the start: a release that fails before anything is applied (a build, a push)
        leaves the namespace as it found it.
        """
        secret, auth = self.pull_secret, self.clients.registry_auth
        if secret is None or auth is None or self.context.options.dry_run:
            return
        env = self.env
        self._shared_once(
            "pull_secret",
            lambda: ensure_pull_secret(self.clients.kube, env.cluster.namespace, secret, env.registry.address, auth),
        )

    def stop_watching(self) -> None:
        """Close the rollout watcher, if one was opened."""
        watcher = self._shared.get("watcher")
        if isinstance(watcher, RolloutWatcher):
            watcher.close()

    def blocker(self, service: str) -> str | None:
        """Why ``service``'s checks cannot run: the first of its stages that failed, or None."""
        pipeline = self.pipeline
        for stage in STAGES:
            if pipeline is None or not pipeline.has(service, stage):
                continue
            try:
                pipeline.wait(service, stage)
            except Exception as e:
                return f"{stage} failed ({checking.one_line(e)})"
        return None

    def note_stage(self, service: str, stage: str, outcome: str, duration_s: float, reason: str = "") -> None:
        """How a stage's test ended (its outcome goes into the record)."""
        entry: dict[str, Any] = {"outcome": outcome, "duration_s": round(duration_s, 3)}
        if reason:
            entry["reason"] = reason
        self.stage_outcomes[(service, stage)] = entry

    # ------------------------------------------------------------------ for stages and checks

    def outcome(self, service: str, task: str) -> object | None:
        """``task``'s outcome for ``service`` when it is part of this run (waits for it), else None."""
        if self.pipeline is None or not self.pipeline.has(service, task):
            return None
        return self.pipeline.wait(service, task)

    @property
    def manifest_dir(self) -> Path:
        """The directory holding the environment's manifests, as fetched for this run."""
        assert self.checkout is not None, "the release was not opened"
        return self.checkout.directory

    def tag_of(self, service: str) -> str:
        """The image tag of ``service``: its source's short commit, else the project's tag."""
        checkout = self.sources.get(service)
        return checkout.short if checkout is not None else self.context.tag

    def source_commit(self, service: str) -> str:
        """The commit ``service``'s code is from: its source as fetched, the record this run
        builds on, else the project's (what the git-sha annotation names)."""
        checkout = self.sources.get(service)
        if checkout is not None:
            return checkout.commit
        ctx, recorded = self.context, self.context.recorded(service)
        if recorded is not None and recorded.source.get("commit") and (ctx.promoting or ctx.skips_stage("build")):
            return str(recorded.source["commit"])
        return ctx.built_from

    def previous_service(self, name: str) -> ServiceRecord | None:
        """What the release recorded in the cluster before this one says about ``name``."""
        return self.previous.services.get(name) if self.previous else None

    def resumed_note(self, stage: str) -> str:
        """Why a resumed release skips ``stage``."""
        source = self.context.source_record.run_id if self.context.source_record else "?"
        return f"resumed at {self.context.options.from_stage}; {stage} output taken from release {source}"

    def pushed(self, service: str) -> stages.Pushed | None:
        """This run's digest for ``service`` (waits for its push), or None."""
        outcome = self.outcome(service, "push")
        return outcome if isinstance(outcome, stages.Pushed) else None

    def ref(self, service: str) -> str | None:
        """The pinned image ``service`` deploys: this run's push, else the record's."""
        pushed = self.pushed(service)
        if pushed is not None:
            return pushed.ref
        recorded = self.context.recorded(service)
        if recorded is not None and recorded.digest:
            return f"{self.env.image_repository(self.env.service(service))}@{recorded.digest}"
        return None

    def refs_for(self, images: Iterable[str]) -> dict[str, str]:
        """Image as written in manifests -> pinned ref, for every service image in ``images``."""
        refs = {}
        for svc in self.env.services:
            if not set(self.env.written_names(svc)) & set(images):
                continue
            ref = self.ref(svc.name)
            if ref is None:
                raise RenderError(
                    f"the manifests use image {svc.image} of service {svc.name}, which has no pushed digest "
                    "in this release (its push did not run or failed) and none recorded",
                    service=svc.name,
                    hint="fix the failure of that service and release again",
                )
            refs[svc.image] = ref
        return refs

    def expected(self, service: str) -> tuple[str | None, str | None, str]:
        """(digest, tag, where from) that ``service`` must run: this run's push, else the record."""
        pushed = self.pushed(service)
        if pushed is not None:
            return pushed.digest, pushed.tag, "this run"
        recorded = self.context.recorded(service)
        if recorded is not None and recorded.digest:
            return recorded.digest, recorded.tag, f"release record {self.context.source_record.run_id}"  # type: ignore[union-attr]
        return None, None, "no release record"

    def applied_objects(self, service: str) -> tuple[AppliedObject, ...]:
        """What ``service``'s manifests applied: this run's apply (none in a dry run), else the
        objects the record names (a checks run, or a resumed run that did not apply)."""
        applied = self.outcome(service, "apply")
        if isinstance(applied, stages.Applied):
            return () if applied.dry_run else applied.objects
        recorded = self.context.recorded(service)
        return tuple(recorded_object(entry) for entry in recorded.objects) if recorded is not None else ()

    def third_party(self, service: str) -> tuple[dict[str, str], ...]:
        """The images no service builds that ``service``'s manifests run, as pinned (container,
        written, pinned, digest, ...): this run's preflight, else the record's."""
        pinned = self.pinned_images.get(service)
        if pinned is not None:
            return tuple(p.to_dict() for p in pinned)
        recorded = self.context.recorded(service)
        return recorded.third_party if recorded is not None else ()

    def workloads(self, service: Service) -> list[Workload] | None:
        """The workloads of ``service``: those this run applied, else those the record names, else
        those whose pods run its image. None when this run applied a service without any."""
        applied = self.outcome(service.name, "apply")
        if isinstance(applied, stages.Applied):
            return list(applied.workloads) or None
        if service.name in self._found:
            return list(self._found[service.name])
        recorded = self.context.recorded(service.name)
        named = recorded.workloads if recorded else ()
        found = workloads_running(service.image, self.reader.workloads(), named=named)
        if self.context.mode != "runbook":  # checks alone read one snapshot: the answer holds for the run
            self._found[service.name] = found
        return found

    def container_facts(self, key: str | None, look: Callable[[], ContainerFacts]) -> ContainerFacts:
        """Facts inside a container, one exec for every container alike (see FactsCache)."""
        return self._facts.get(key, look)

    def _shared_once(self, name: str, make: Callable[[], Any]) -> Any:
        with self._shared_lock:
            if name not in self._shared:
                self._shared[name] = make()
            return self._shared[name]

    @property
    def watcher(self) -> RolloutWatcher:
        """The one rollout watcher of the environment's namespace."""
        return self._shared_once("watcher", lambda: RolloutWatcher(self.clients.kube, self.env.cluster.namespace))  # type: ignore[no-any-return]

    @property
    def reader(self) -> Reader:
        """Where checks read the namespace: fresh lists in a release, one snapshot for checks alone."""
        kind = LiveReader if self.context.mode == "runbook" else SnapshotReader
        return self._shared_once("reader", lambda: kind(self.clients.kube, self.env.cluster.namespace))  # type: ignore[no-any-return]

    @property
    def registry_answers(self) -> CachedManifests:
        """The registry, asked once per (repository, reference) in this run."""
        return self._shared_once("registry", lambda: CachedManifests(self.clients.registry))  # type: ignore[no-any-return]
