"""The start and the end of a run: first cluster contact, lock, preflight; record, rollback.

``open_release`` is the first contact with the cluster, made only after every local check
passed: for checks alone it reads the record of what should be running; for a release it
settles what a promotion promotes, creates the namespace, takes the lock, fetches the
manifests and runs the preflight. ``close_release`` writes ``release.json``, restores the
last passed release when asked and the release failed, keeps the record in the cluster
when something was applied, and always gives the lock back. ``abandon`` gives it back when
the session ended before it could close (an error in open, Ctrl-C during collection).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from deploybook.cluster.access import require_write_access
from deploybook.cluster.connect import KubeClients, api_errors
from deploybook.cluster.lock import LeaseRenewer, acquire_lock, holder_identity, release_lock
from deploybook.errors import CheckFailed, RecordError
from deploybook.evidence.record import ReleaseRecord, write_record
from deploybook.evidence.record_store import CONFIGMAP_NAME, load_from_cluster, load_last_passed, save_to_cluster
from deploybook.manifests.apply import ensure_namespace
from deploybook.manifests.source import checkout_manifests
from deploybook.release.parts import ReleaseParts
from deploybook.release.preflight import placeholder_refs, preflight_release
from deploybook.release.promotion import PromotedPins, settle_promotion
from deploybook.release.recording import build_record
from deploybook.release.rollback import roll_back, to_roll_back
from deploybook.release.sources import fetch_sources, git_access
from deploybook.sources.git import Checkout
from deploybook.verify.workloads import workloads_running

__all__ = ["SOURCE_RECORD_FILE", "abandon", "close_release", "open_release"]

SOURCE_RECORD_FILE = "source-release.json"
"""The record a run builds on (resumed or promoted), copied into the run folder."""
PIPELINE_GRACE_S = 120.0  # how long an interrupted release waits for the tasks already running


def open_release(release: ReleaseParts) -> None:
    """Connect; for checks learn what should run; for a release take the lock and preflight."""
    if release.context.mode == "checks":
        _open_checks(release, release.clients.kube)
        return
    if not release.context.promoting:
        release.sources = _fetch_sources(release)  # git only: a bad source stops before any cluster contact
    settle_promotion(release)
    kube = release.clients.kube
    ctx, env = release.context, release.env
    auth = release.clients.registry_auth  # resolved before the namespace and the lock
    # The registry answers with these credentials over verified TLS before the cluster is
    # touched: a wrong password, CA or address must not leave a pull secret or a lock behind.
    release.clients.registry.ping()
    if ctx.promoting:
        release.clients.source_registry.ping()  # where the promoted images are copied from
    release.pull_secret = env.pull_secret if env.pull_secret and auth is not None else None
    ctx.run_dir.mkdir(parents=True, exist_ok=True)
    if ctx.source_record is not None:
        (ctx.run_dir / SOURCE_RECORD_FILE).write_text(ctx.source_record.to_json())
    release.say(f"release {ctx.run_id} of {env.name} to {kube.server} namespace {env.cluster.namespace}")
    require_write_access(kube, env.cluster.namespace, environment=env.name)
    if not ctx.options.dry_run:
        _take_lock(release, kube)
    release.previous = _previous_record(release, kube)
    if ctx.promoting and env.manifests.service_path is not None:
        release.sources = _fetch_sources(release)
    release.checkout = checkout_manifests(
        env.manifests,
        root=env.root,
        work_dir=ctx.run_dir / "manifest-source" / "release",
        project=ctx.git,
        access=git_access(env),
        services=env.services,
        sources=release.sources,
    )
    known = {s.name: release.ref(s.name) for s in env.services}
    # A promotion runs the vendor images as the promoted release pinned them, not as tagged now.
    promoted = ctx.source_record if ctx.promoting else None
    checked = preflight_release(
        None if ctx.options.dry_run else kube,
        env,
        release.checkout.directory,
        refs=placeholder_refs(env, known),
        pull_secret=release.pull_secret,
        release_id=ctx.run_id,
        git_sha=ctx.built_from,
        say=release.say,
        resolver=PromotedPins(promoted) if promoted else release.clients.image_resolver,
        rules=release.manifest_rules,
    )
    release.pinned_images = {r.service: r.pinned for r in checked}
    release.watcher.start(set().union(*(r.kinds for r in checked)))
    if ctx.options.rollback_on_failure and not ctx.options.dry_run:
        _read_rollback_target(release, kube)


def _fetch_sources(
    release: ReleaseParts, of: ReleaseRecord | None = None, folder: str = "sources"
) -> dict[str, Checkout]:
    """Each git-sourced service's code into ``RUN_DIR/FOLDER``: at the branch, or at the commits
    ``of`` recorded (a promoted release's, when promoting; a rollback target's)."""
    ctx = release.context
    of = of or (ctx.source_record if ctx.promoting else None)
    commits = None
    if of is not None:
        commits = {n: str(s.source["commit"]) for n, s in of.services.items() if s.source.get("commit")}
    if not any(s.source is not None for s in release.env.services):
        return {}
    return fetch_sources(release.env, ctx.run_dir / folder, commits=commits, say=release.say)


def _open_checks(release: ReleaseParts, kube: KubeClients) -> None:
    """Checks alone need something to check: one clear failure, not every check of every service."""
    ctx, env = release.context, release.env
    from_file = ctx.source_record is not None
    if ctx.source_record is None:
        release.context = dataclasses.replace(ctx, source_record=load_from_cluster(kube, env.cluster.namespace))
    record = release.context.source_record
    workloads = release.reader.workloads()
    if record is None:
        if not any(workloads_running(s.image, workloads) for s in env.services):
            raise _nothing_there(
                release,
                kube,
                f"no release record (ConfigMap {CONFIGMAP_NAME}) and no workload runs an image of "
                + ", ".join(s.image for s in env.services),
            )
        return
    named = {s.name: tuple(r.workloads) for s in env.services if (r := record.services.get(s.name)) is not None}
    if any(named.values()) and not any(
        workloads_running(s.image, workloads, named=named.get(s.name, ())) for s in env.services if named.get(s.name)
    ):
        where = "the --release file" if from_file else f"the release record (ConfigMap {CONFIGMAP_NAME})"
        wanted = ", ".join(w for ws in named.values() for w in ws)
        raise _nothing_there(release, kube, f"{where} names {wanted}, and none of them exists")


def _nothing_there(release: ReleaseParts, kube: KubeClients, why: str) -> CheckFailed:
    env = release.env
    return CheckFailed(
        f"nothing is recorded or running in namespace {env.cluster.namespace}: {why}",
        source=kube.where,
        hint=f"release first (pytest runbook --env {env.name}), or check the environment that runs it",
    )


def _take_lock(release: ReleaseParts, kube: KubeClients) -> None:
    ctx, env = release.context, release.env
    ensure_namespace(kube, env.cluster.namespace)
    lock = acquire_lock(
        kube.coordination,
        env.cluster.namespace,
        holder=holder_identity(ctx.run_id),
        duration_s=env.lock_duration_s,
        take_over=ctx.options.take_over_lock,
        cluster=kube.where,
    )
    release.lock = lock
    release.renewer = LeaseRenewer(kube.coordination, lock)
    release.renewer.start()
    if lock.took_over_from:
        release.say(f"took over the lock of {lock.took_over_from} (--take-over-lock)")


def _previous_record(release: ReleaseParts, kube: KubeClients) -> ReleaseRecord | None:
    """The release recorded in the cluster before this one (None on a first release)."""
    try:
        return load_from_cluster(kube, release.env.cluster.namespace)
    except RecordError as e:
        release.say(f"the previous release record is unreadable, so every service gets this run's id: {e}")
        return None


def _read_rollback_target(release: ReleaseParts, kube: KubeClients) -> None:
    """The last passed release, read before anything is applied: what a rollback restores."""
    release.rollback_target = target = load_last_passed(kube, release.env.cluster.namespace)
    if target is None:
        release.say(
            "--rollback-on-failure: no passed release in the namespace yet; a failure is reported, not rolled back"
        )
    else:
        release.say(f"--rollback-on-failure: a failure restores release {target.run_id}")


def close_release(release: ReleaseParts, outcome: str) -> ReleaseRecord | None:
    """Write release.json, keep it in the cluster when something was applied, free the lock.

    A failed release with ``--rollback-on-failure`` first restores the last passed release
    (while the lock is still held); its outcome is then ``rolled-back``.
    """
    try:
        if release.pipeline is not None:
            release.pipeline.cancel()
            release.pipeline.join(PIPELINE_GRACE_S)
        if release.context.mode != "runbook":
            return None
        kube = release.clients.kube if release.clients.connected("kube") else None
        facts = _cluster_facts(kube)
        record = build_record(release, outcome=outcome, cluster=facts)
        restored = None
        if kube is not None and record.outcome == "failed" and _should_roll_back(release):
            record, restored = _roll_back(release, kube, record, facts)
        write_record(release.context.run_dir, record)
        release.record = record
        if kube is not None and (record.applied or restored) and not release.context.options.dry_run:
            save_to_cluster(kube, release.env.cluster.namespace, record, running=restored)
        return record
    finally:
        abandon(release)


def _should_roll_back(release: ReleaseParts) -> bool:
    options = release.context.options
    return options.rollback_on_failure and not options.dry_run and release.rollback_target is not None


def _roll_back(
    release: ReleaseParts, kube: KubeClients, record: ReleaseRecord, facts: dict[str, Any]
) -> tuple[ReleaseRecord, ReleaseRecord | None]:
    """Restore the target release; the record says how, and what runs now."""
    target = release.rollback_target
    assert target is not None
    services = to_roll_back(record, target)
    if not services:
        return record, None
    release.say(f"release failed; rolling back {', '.join(services)} to release {target.run_id}")
    env, ctx = release.env, release.context
    sources = _fetch_sources(release, target, "rollback-sources") if env.manifests.service_path else {}
    checkout = checkout_manifests(
        env.manifests,
        root=env.root,
        work_dir=ctx.run_dir / "manifest-source" / "rollback",
        project=ctx.git,
        commit=target.manifest_source.get("commit") if env.manifests.git else None,
        access=git_access(env),
        services=[s for s in env.services if s.name in sources] if sources else env.services,
        sources=sources,
    )
    result = roll_back(
        kube,
        env,
        target,
        services,
        manifest_dir=checkout.directory,
        timeout_s=env.timeouts.rollout,
        attempted={n: s.digest for n, s in record.services.items()},
        say=release.say,
    )
    rollback = {**result.to_dict(), "manifest_source": dict(checkout.info)}
    record = build_record(release, outcome="rolled-back" if result.ok else "failed", cluster=facts, rollback=rollback)
    release.say(f"rollback to {target.run_id} {'proven' if result.ok else 'FAILED'}")
    return record, (target if result.ok else None)


def _cluster_facts(kube: KubeClients | None) -> dict[str, Any]:
    if kube is None:
        return {}
    facts: dict[str, Any] = {"server": kube.server, "context": kube.context}
    try:
        facts["version"] = kube.server_version()
    except Exception as e:  # the version is informative; its absence must not lose the record
        facts["version"] = f"unknown ({type(e).__name__})"
    return facts


def abandon(release: ReleaseParts) -> None:
    """Give the lock back if this run holds it and stop watching; a failure is reported, not raised."""
    if release.renewer is not None:
        release.renewer.stop()
        release.renewer = None
    lock, release.lock = release.lock, None
    if lock is not None:
        kube = release.clients.kube
        try:
            with api_errors(kube.where, f"releasing the lock in {lock.namespace}"):
                release_lock(kube.coordination, lock)
        except Exception as e:  # never mask the session's own outcome
            sys.stderr.write(f"deploybook: could not release lease in {lock.namespace}: {e}\n")
    release.stop_watching()
    release.clients.close()
