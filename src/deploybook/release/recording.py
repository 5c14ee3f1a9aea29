"""The release record of a run, made from what its stages produced and how their tests ended.

Per service: the code it was built from (repository, ref and commit, or the project's
folder and commit), the image and the digest deployed (this run's push, or for a stage a
resumed or promoting release did not run, the record it builds on), the release id and the sha256
of the rendered manifests, the workloads and every object applied, and each stage's outcome as its test
reported it (so a stage whose test failed on an assertion is recorded as failed; a stage
whose test never ran, as after Ctrl-C, is recorded as the engine finished it). ``applied``
lists the services whose objects the engine applied, whatever their tests showed: the
record says what the cluster got. ``outside_namespace`` names what the environment let the
release write outside its namespace (its ``confinement``), so a reader sees it was allowed.
Each image no service builds is listed with the digest the preflight pinned it to
(``third_party``); every policy the environment relaxes, per service, with its reason
(``relaxed_policies``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deploybook.config.model import Confinement
from deploybook.evidence.record import ReleaseRecord, ServiceRecord
from deploybook.manifests.apply import AppliedObject
from deploybook.release.context import utc_now
from deploybook.release.names import STAGES
from deploybook.release.parts import ReleaseParts
from deploybook.release.pipeline import Skipped
from deploybook.release.sources import source_info
from deploybook.release.stages import Applied, Built, Pushed

__all__ = ["allowed_outside", "build_record", "recorded_object"]


def build_record(
    release: ReleaseParts,
    *,
    outcome: str,
    cluster: dict[str, Any] | None = None,
    rollback: dict[str, Any] | None = None,
) -> ReleaseRecord:
    """The record of ``release`` as it stands now."""
    ctx = release.context
    services = {s.name: _service_record(release, s.name) for s in ctx.env.services}
    services = {name: record for name, record in services.items() if record.stages or record.digest}
    source = ctx.source_record
    git = ctx.git
    return ReleaseRecord(
        run_id=ctx.run_id,
        environment=ctx.env.name,
        namespace=ctx.env.cluster.namespace,
        outcome=outcome,
        started=ctx.started,
        finished=utc_now(),
        dry_run=ctx.options.dry_run,
        git={"branch": git.branch, "commit": git.commit, "dirty": git.dirty} if git else {},
        manifest_source=dict(release.checkout.info) if release.checkout else {},
        services=services,
        cluster=cluster or {},
        promoted_from=source.run_id if source and ctx.promoting else None,
        promotion_proof=ctx.promotion_proof,
        resumed_from=source.run_id if source and ctx.options.from_stage else None,
        applied=tuple(n for n in services if _applied(release, n)),
        interrupted_during=release.running_test if outcome == "interrupted" else None,
        rollback=rollback or {},
        outside_namespace=allowed_outside(ctx.env.confinement),
        relaxed_policies=tuple({"service": name, **s.to_dict()} for name, s in ctx.env.relaxed_policies()),
    )


def allowed_outside(confinement: Confinement) -> tuple[str, ...]:
    """``Kind/name`` of each cluster-scoped object, then ``namespace NAME``, the release may write."""
    return (*sorted(confinement.cluster_scoped), *(f"namespace {n}" for n in sorted(confinement.namespaces)))


def _service_record(release: ReleaseParts, name: str) -> ServiceRecord:
    ctx = release.context
    recorded = ctx.recorded(name)
    built, pushed, applied = (_finished(release, name, stage) for stage in STAGES)
    fields: dict[str, Any] = {}
    if recorded is not None and recorded.digest:  # what a resumed or promoting run builds on
        fields.update(image=ctx.env.image_repository(ctx.env.service(name)), tag=recorded.tag, digest=recorded.digest)
        if not ctx.promoting:
            fields["image_id"] = recorded.image_id
    if isinstance(built, Built):
        fields.update(image=built.repository, tag=built.tag, image_id=built.image_id)
    if isinstance(pushed, Pushed):
        fields.update(image=pushed.repository, tag=pushed.tag or fields.get("tag"), digest=pushed.digest)
        fields["digest_source"] = pushed.source
    if isinstance(applied, Applied) and not applied.dry_run:
        fields.update(
            deployed_by=applied.release_id,
            manifests={applied.manifest: applied.sha256},
            workloads=tuple(w.title for w in applied.workloads),
            objects=tuple(_object_entry(o) for o in applied.objects),
        )
    elif recorded is not None and not isinstance(applied, Applied):  # not applied now: the cluster holds the record's
        fields.update(workloads=recorded.workloads, objects=recorded.objects)
    pinned = release.pinned_images.get(name)
    if pinned:
        fields["third_party"] = tuple(p.to_dict() for p in pinned)
    stages = {stage: entry for stage in STAGES if (entry := _stage_entry(release, name, stage))}
    return ServiceRecord(name=name, stages=stages, source=_source(release, name, recorded), **fields)


def _object_entry(obj: AppliedObject) -> dict[str, str]:
    entry = {"apiVersion": obj.api_version, "kind": obj.kind, "name": obj.name}
    return {**entry, "namespace": obj.namespace} if obj.namespace else entry


def recorded_object(entry: Mapping[str, str]) -> AppliedObject:
    """An object of a service as the record names it (applied by the release recorded): what
    ``_object_entry`` wrote, read back."""
    return AppliedObject(
        kind=str(entry.get("kind", "")),
        namespace=entry.get("namespace"),
        name=str(entry.get("name", "")),
        action="recorded",
        dry_run=False,
        api_version=str(entry.get("apiVersion", "")),
    )


def _source(release: ReleaseParts, name: str, recorded: ServiceRecord | None) -> dict[str, Any]:
    """The code the service's image is from: as fetched for this run's build, else as the
    release this run builds on (promoted or resumed) recorded it."""
    ctx = release.context
    if ctx.promoting or ctx.skips_stage("build"):
        return dict(recorded.source) if recorded is not None else {}
    return source_info(ctx.env, ctx.env.service(name), release.sources.get(name), ctx.git)


def _stage_entry(release: ReleaseParts, service: str, stage: str) -> dict[str, Any] | None:
    """How the stage's test ended; for a stage whose test did not run, how the engine ended it."""
    noted = release.stage_outcomes.get((service, stage))
    if noted is not None:
        return noted
    pipeline = release.pipeline
    if pipeline is None or not pipeline.has(service, stage) or not pipeline.done(service, stage):
        return None
    timing = pipeline.timing(service, stage)
    entry: dict[str, Any] = {"duration_s": round(timing.seconds, 3) if timing else 0.0}
    try:
        outcome = pipeline.wait(service, stage)
    except Exception as e:  # recorded as the stage's failure
        return {**entry, "outcome": "failed", "reason": str(e)[:300]}
    if isinstance(outcome, Skipped):
        return {**entry, "outcome": "skipped", "reason": outcome.reason[:300]}
    return {**entry, "outcome": "passed"}


def _applied(release: ReleaseParts, service: str) -> bool:
    """True when the engine applied ``service``'s objects (not a dry run)."""
    applied = _finished(release, service, "apply")
    return isinstance(applied, Applied) and not applied.dry_run


def _finished(release: ReleaseParts, service: str, stage: str) -> object | None:
    """A stage's outcome if it finished (a stage still running at an interrupt has none)."""
    pipeline = release.pipeline
    if pipeline is None or not pipeline.has(service, stage) or not pipeline.done(service, stage):
        return None
    try:
        return pipeline.wait(service, stage)
    except Exception:  # a failed stage: its test recorded the failure
        return None
