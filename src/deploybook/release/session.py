"""The start and end of a release session: cluster contact, lock, record, summary.

Called by :mod:`deploybook.plugin.hooks` on the controller only (never on xdist workers):
``start_release`` from ``pytest_sessionstart`` (the first cluster contact, after every
local check passed) and ``finish_release`` from ``pytest_sessionfinish``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest

from deploybook.cluster.lock import LeaseRenewer, Lock, acquire_lock, holder_identity, release_lock
from deploybook.config.environment import load_environment
from deploybook.errors import DeploybookError
from deploybook.evidence.record import (
    RECORD_FILE,
    ReleaseRecord,
    build_record,
    load_from_cluster,
    load_last_passed,
    read_fragments,
    save_to_cluster,
    write_record,
)
from deploybook.release import policy
from deploybook.release.state import FRAGMENTS, STAGES, RunState

if TYPE_CHECKING:
    from deploybook.cluster.connect import KubeClients

SOURCE_RECORD_FILE = "source-release.json"
"""The record a run builds on (resumed or promoted), copied into the run folder."""

_KUBE = pytest.StashKey["KubeClients"]()
_LOCK = pytest.StashKey[Lock]()
_RENEWER = pytest.StashKey[LeaseRenewer]()


def connect_cluster(config: pytest.Config, state: RunState) -> KubeClients:
    """The environment's cluster (``--kube-context`` wins over the file), connected once per process."""
    cached = config.stash.get(_KUBE, None)
    if cached is not None:
        return cached
    from deploybook.cluster.connect import connect

    cluster = state.env.cluster
    context = config.option.deploybook_kube_context or cluster.context
    clients = connect(context=context, kubeconfig=cluster.kubeconfig, in_cluster=True if cluster.in_cluster else None)
    config.stash[_KUBE] = clients
    return clients


def start_release(config: pytest.Config, state: RunState) -> None:
    """Connect, settle the promoted release, create the namespace, take the lock, run the preflight."""
    kube = connect_cluster(config, state)
    env = state.env
    if env.promote_from and state.source_record is None:
        state.source_record = _recorded_release_of(env.promote_from, config)
        policy.check_promotion(env, state.source_record, confirmed=state.confirm_prod)
        state.prefill_from_record()
        from deploybook.plugin.fixtures import resolve_registry_auth

        resolve_registry_auth(env)  # before the namespace and the lock, as for every release
    if state.source_record is not None:
        (state.run_dir / SOURCE_RECORD_FILE).write_text(state.source_record.to_json())
    _say(config, f"deploybook: release {state.run_id} of {env.name} to {kube.server} namespace {env.cluster.namespace}")
    if state.dry_run:
        _preflight(config, state, kube)
        return
    from deploybook.manifests.apply import ensure_namespace

    ensure_namespace(kube, env.cluster.namespace)
    lock = acquire_lock(
        kube.coordination,
        env.cluster.namespace,
        holder=holder_identity(state.run_id),
        duration_s=env.lock_duration_s,
        take_over=state.take_over_lock,
        cluster=kube.where,
    )
    config.stash[_LOCK] = lock
    renewer = LeaseRenewer(kube.coordination, lock)
    renewer.start()
    config.stash[_RENEWER] = renewer
    if lock.took_over_from:
        _say(config, f"deploybook: took over the lock of {lock.took_over_from} (--take-over-lock)")
    # After the lock (so a refused lock is what a read-only identity hears), before any stage.
    _preflight(config, state, kube)
    if state.rollback_on_failure:
        _read_rollback_target(config, state, kube)


def _preflight(config: pytest.Config, state: RunState, kube: KubeClients) -> None:
    """Every service's manifests rendered and dry-run before the build or any apply."""
    from deploybook.plugin.fixtures import resolve_registry_auth
    from deploybook.release.preflight import manifest_directory, preflight_release

    env = state.env
    pull_secret = env.pull_secret if env.pull_secret and resolve_registry_auth(env) is not None else None
    preflight_release(
        kube,
        state,
        manifest_directory(env, state.run_dir),
        pull_secret=pull_secret,
        say=lambda text: _say(config, f"deploybook: {text}"),
    )


def _read_rollback_target(config: pytest.Config, state: RunState, kube: KubeClients) -> None:
    """The last passed release, read before anything is applied: what a rollback restores."""
    state.rollback_target = load_last_passed(kube, state.env.cluster.namespace)
    target = state.rollback_target
    if target is None:
        _say(
            config,
            "deploybook: --rollback-on-failure: no passed release in the namespace yet; "
            "a failure will be reported, not rolled back",
        )
    else:
        _say(config, f"deploybook: --rollback-on-failure: a failure restores release {target.run_id}")


def _recorded_release_of(name: str, config: pytest.Config) -> Any:
    """The release recorded in the cluster of environment ``name`` (read-only)."""
    from deploybook.cluster.connect import connect

    other = load_environment(name, config.rootpath / "environments")
    c = other.cluster
    kube = connect(context=c.context, kubeconfig=c.kubeconfig, in_cluster=True if c.in_cluster else None)
    return load_from_cluster(kube, c.namespace)


def finish_release(config: pytest.Config, state: RunState, exitstatus: int) -> None:
    """Write release.json, keep it in the cluster when something was applied, free the lock.

    A failed release run with ``--rollback-on-failure`` first restores the last passed
    release (while the lock is still held); its outcome is then ``rolled-back``.
    """
    try:
        kube = config.stash.get(_KUBE, None)
        facts = _cluster_facts(kube)
        record = build_record(state, outcome=_outcome(exitstatus), cluster=facts)
        restored = None
        if kube is not None and record.outcome == "failed" and _should_roll_back(state):
            record, restored = _roll_back(config, state, kube, record, facts)
        write_record(state.run_dir, record)
        if kube is not None and (record.applied or restored) and not state.dry_run:
            save_to_cluster(kube, state.env.cluster.namespace, record, running=restored)
    finally:
        release_held_lock(config)


def _should_roll_back(state: RunState) -> bool:
    return state.rollback_on_failure and not state.dry_run and state.rollback_target is not None


def _roll_back(
    config: pytest.Config, state: RunState, kube: KubeClients, record: ReleaseRecord, facts: dict[str, Any]
) -> tuple[ReleaseRecord, ReleaseRecord | None]:
    """Restore the target release; the record says how, and what runs now."""
    from deploybook.release.rollback import roll_back, to_roll_back

    target = state.rollback_target
    assert target is not None
    services = to_roll_back(record, target)
    if not services:
        return record, None
    _say(config, f"deploybook: release failed; rolling back {', '.join(services)} to release {target.run_id}")
    result = roll_back(
        kube,
        state.env,
        target,
        services,
        manifest_dir=_manifest_dir(state, target),
        timeout_s=state.env.timeouts.rollout,
        attempted={n: s.digest for n, s in record.services.items()},
        say=lambda text: _say(config, f"deploybook: {text}"),
    )
    outcome = "rolled-back" if result.ok else "failed"
    record = build_record(state, outcome=outcome, cluster=facts, rollback=result.to_dict())
    _say(config, f"deploybook: rollback to {target.run_id} {'proven' if result.ok else 'FAILED'}")
    return record, (target if result.ok else None)


def _manifest_dir(state: RunState, target: ReleaseRecord) -> Any:
    """Where the target release's manifests are: this repository, or its environment repo commit."""
    source = state.env.manifests
    if source.git is None:
        return source.path
    from deploybook.sources.git import fetch_ref

    checkout = state.run_dir / "manifest-source" / "rollback"
    fetch_ref(source.git.url, str(target.manifest_source.get("commit") or source.git.ref), checkout)
    return checkout / source.git.path


def _outcome(exitstatus: int) -> str:
    if exitstatus == pytest.ExitCode.OK:
        return "passed"
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return "interrupted"
    return "failed"


def _cluster_facts(kube: KubeClients | None) -> dict[str, Any]:
    if kube is None:
        return {}
    facts: dict[str, Any] = {"server": kube.server, "context": kube.context}
    try:
        facts["version"] = kube.server_version()
    except Exception as e:  # the version is informative; its absence must not lose the record
        facts["version"] = f"unknown ({type(e).__name__})"
    return facts


def release_held_lock(config: pytest.Config) -> None:
    """Give the lock back if this process holds it; a failure is reported, not raised."""
    renewer = config.stash.get(_RENEWER, None)
    if renewer is not None:
        del config.stash[_RENEWER]
        renewer.stop()
    lock = config.stash.get(_LOCK, None)
    kube = config.stash.get(_KUBE, None)
    if lock is None or kube is None:
        return
    del config.stash[_LOCK]
    from deploybook.cluster.connect import api_errors

    try:
        with api_errors(kube.where, f"releasing the lock in {lock.namespace}"):
            release_lock(kube.coordination, lock)
    except Exception as e:  # never mask the session's own outcome
        sys.stderr.write(f"deploybook: could not release lease in {lock.namespace}: {e}\n")


def print_release_summary(terminalreporter: Any, state: RunState) -> None:
    """One line per service: the outcome of each stage and the digest."""
    if not (state.run_dir / FRAGMENTS).is_dir():
        return
    services, _ = read_fragments(state.run_dir)
    tr = terminalreporter
    tr.section(f"deploybook release {state.run_id} ({state.env.name})", sep="-", bold=True)
    tr.write_line(f"{'service':<14}" + "".join(f"{s:<10}" for s in STAGES) + "image")
    for name in state.env.service_names:
        result = services.get(name)
        if result is None:
            continue
        outcomes = "".join(f"{result.stages.get(s, {}).get('outcome', '-'):<10}" for s in STAGES)
        tr.write_line(f"{name:<14}{outcomes}{result.ref or '-'}")
    record = state.run_dir / RECORD_FILE
    if record.is_file():
        tr.write_line(f"release record: {record}", bold=True)


def _say(config: pytest.Config, text: str) -> None:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
        tr.write_line(text)


__all__ = ["DeploybookError", "connect_cluster", "finish_release", "start_release"]
