"""The built-in post-deploy checks for one service: rollout, endpoints, digests, containers.

The rollout covers every workload kind (``deploybook.verify.verdicts`` chooses the rules) and,
in a release, the custom resources it applied (kstatus generic rules, ``verify.resources``).

Each check reads the cluster (and the registry) and returns a report; the checks' tests
assert on it. They run in the pipeline right after the service's apply (a release) or all
at once (checks alone), so every service is waited for and asked at the same time. A
failed rollout ends the service's chain: its other checks are skipped naming the rollout's
cause, so one fault is one failure.

Where the objects come from: a release lists what it needs when it needs it (its apply just
changed the namespace); checks alone read one namespace snapshot, one list per kind.
Nothing here creates, patches or deletes anything.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from deploybook.config.model import Service
from deploybook.errors import CheckFailed, DeploybookError, ExecFailed, ExecForbidden, RolloutFailed
from deploybook.images.references import repository_path
from deploybook.manifests.apply import AppliedObject
from deploybook.manifests.render import SCALABLE_KINDS
from deploybook.release.check_reports import (
    ContainersReport,
    DigestsReport,
    EndpointsReport,
    RolloutReport,
    RulesReport,
)
from deploybook.release.parts import ReleaseParts
from deploybook.release.pipeline import Skipped
from deploybook.verify.containers import ContainerFacts, facts_key, inspect_container, judge_container
from deploybook.verify.digests import (
    CachedManifests,
    RunningContainer,
    containers_in,
    digest_mismatches,
    pinned_mismatches,
    registry_problem,
)
from deploybook.verify.endpoints import http_check, service_port_for, settled_reports
from deploybook.verify.namespace import pods_of_all
from deploybook.verify.resources import is_polled, wait_for_resource
from deploybook.verify.rollout import RolloutResult, rolled_out_in
from deploybook.verify.workload_status import job_exits
from deploybook.verify.workloads import Workload, services_selecting, services_selecting_nothing

__all__ = [
    "AFTER_ROLLOUT",
    "CHECKS",
    "blocking_reason",
    "containers",
    "digests",
    "endpoints",
    "one_line",
    "registry_answers",
    "rollout",
    "rules",
]

Say = Callable[[object], None]
EXEC_ATTEMPTS = 3
EXEC_AT_ONCE = 4  # kubectl processes started at once (each costs a process start)


# --------------------------------------------------------------------------- the checks


def rollout(release: ReleaseParts, service: Service, say: Say) -> RolloutReport | Skipped:
    """Each workload of the service has rolled out, or says why not."""
    workloads = release.workloads(service)
    if workloads is None and not _polled_objects(release, service):
        return Skipped(f"{service.name}'s manifests hold no workload to roll out")
    workloads = workloads or []
    if not workloads and not _polled_objects(release, service):
        raise CheckFailed(
            f"no workload in namespace {release.env.cluster.namespace} runs image {service.image}",
            service=service.name,
            hint="release the service, or check the environment and namespace it runs in",
        )
    namespace, timeout_s = release.context.env.cluster.namespace, release.context.env.timeouts.rollout
    results, failures, waited = [], [], False
    for wl in workloads:
        listed = _listed_result(release, wl, namespace, timeout_s)
        if listed is not None:
            say(f"{wl.title}: {listed.timeline[-1][1]} (rolled out in the namespace list)")
            results.append(listed)
            continue
        waited = True
        try:
            results.append(
                release.watcher.watch(
                    wl.kind,
                    wl.name,
                    timeout_s=timeout_s,
                    on_progress=_prefixed(say, wl.title),
                    min_generation=wl.generation,
                    uid=wl.uid,
                    probe_failures_allowed=release.context.env.timeouts.probe_failures_allowed,
                    crashes_allowed=release.context.env.timeouts.crashes_allowed,
                )
            )
        except RolloutFailed as exc:
            exc.service = service.name
            failures.append(exc)
    if waited:
        release.reader.forget_pods()  # pods moved on while waiting
    not_judged = []
    for obj in _polled_objects(release, service):
        try:
            results.append(
                wait_for_resource(
                    release.clients.kube,
                    obj.api_version,
                    obj.kind,
                    obj.namespace or namespace,
                    obj.name,
                    timeout_s=timeout_s,
                    on_progress=_prefixed(say, f"{obj.kind}/{obj.name}"),
                    crashes_allowed=release.context.env.timeouts.crashes_allowed,
                )
            )
        except RolloutFailed as exc:
            if exc.cause == "Forbidden" and release.context.mode != "runbook":  # alone, under a read-only context
                say(f"{obj.kind}/{obj.name}: not judged: {exc.detail}")
                not_judged.append(f"{obj.kind}/{obj.name}: {exc.detail}")
                continue
            exc.service = service.name
            failures.append(exc)
    return RolloutReport(tuple(results), tuple(failures), tuple(not_judged))


def _polled_objects(release: ReleaseParts, service: Service) -> list[AppliedObject]:
    """The custom resources and bare Pods of ``service``'s manifests (this run's, or the record's)."""
    return [o for o in release.applied_objects(service.name) if is_polled(o.api_version, o.kind)]


def _prefixed(say: Say, prefix: str) -> Callable[[str], None]:
    def emit(text: str) -> None:
        say(f"{prefix}: {text}")

    return emit


def _listed_result(release: ReleaseParts, wl: Workload, namespace: str, timeout_s: float) -> RolloutResult | None:
    if release.context.mode == "runbook":
        return None  # this run applied just now: only a watch from here on can tell
    obj = next((o for o in release.reader.items(wl.kind) if o["metadata"]["name"] == wl.name), None)
    return None if obj is None else rolled_out_in(wl.kind, namespace, obj, timeout_s=timeout_s)


def endpoints(release: ReleaseParts, service: Service, say: Say) -> EndpointsReport | Skipped:
    """Ready endpoints on each Service in front of the pods, then every declared HTTP check."""
    namespace = release.context.env.cluster.namespace
    workloads = release.workloads(service) or []
    if (idle := _runs_no_pod(workloads)) is not None:
        return idle
    listed = release.reader.items("Service")
    fronts = services_selecting(listed, workloads)
    strays = _selecting_nothing(release, service, say, listed)
    if not fronts and service.port is None:
        if strays:
            return EndpointsReport(problems=tuple(strays))
        return Skipped(f"{service.name} declares no port and no Service selects its pods")
    if not fronts:
        return EndpointsReport(problems=(f"no Service in {namespace} selects the pods of {service.name}", *strays))
    names = [s["metadata"]["name"] for s in fronts]
    wait_s = release.context.env.timeouts.http if release.context.mode == "runbook" else 0.0  # alone: as found
    reports = settled_reports(namespace, names, release.reader.slices_of, wait_s=wait_s)
    problems = strays + [
        f"Service {namespace}/{r.service} has no ready endpoints "
        f"({r.verdict}; not ready: {', '.join(r.not_ready) or '-'})"
        for r in reports
        if not r.ready
    ]
    # The service proxy addresses a Service port, not the container port it forwards to.
    named = {k: v for wl in workloads for k, v in wl.named_ports.items()}
    port = service_port_for(fronts[0], service.port, named)
    target = fronts[0]["metadata"]["name"]
    if service.http:
        _wait_for_other_rollouts(release, service, say)
    answers = []
    for check in service.http:
        result = http_check(
            release.clients.kube,
            namespace,
            check,
            service=target,
            port=port,
            timeout_s=release.context.env.timeouts.http,
        )
        answers.append(result)
        say(f"GET {check.path} on {target}: {result.status} in {result.latency_ms:.0f} ms")
        if result.forbidden:
            reason = (
                f"context {release.clients.kube.context} may not get services/proxy (the view role lacks it): "
                f"HTTP check {check.path} of {target} not run"
            )
            return EndpointsReport(tuple(reports), tuple(answers), tuple(problems), reason)
        problems += [f"GET {check.path} on {target}: {p}" for p in result.problems]
    return EndpointsReport(tuple(reports), tuple(answers), tuple(problems))


def _selecting_nothing(release: ReleaseParts, service: Service, say: Say, listed: list[Any]) -> list[str]:
    """A problem for each Service of ``service``'s manifests (this run's, or the record's) whose
    selector matches no pod and no workload of the namespace (asked again once the other
    services have rolled out: the Service may front one of theirs)."""
    names = {o.name for o in release.applied_objects(service.name) if o.kind == "Service"}
    if not names:
        return []

    def strays(services: list[Any]) -> list[Mapping[str, Any]]:
        mine = [s for s in services if s["metadata"]["name"] in names]
        left = services_selecting_nothing(mine, release.reader.items("Pod"), []) if mine else []
        return services_selecting_nothing(left, [], release.reader.workloads()) if left else []

    found = strays(listed)
    if found:
        _wait_for_other_rollouts(release, service, say)
        release.reader.forget_pods()
        found = strays(release.reader.items("Service"))
    namespace = release.context.env.cluster.namespace
    return [
        f"Service {namespace}/{s['metadata']['name']} ({service.manifest}) selects no pod: nothing in {namespace} "
        f"carries {', '.join(f'{k}={v}' for k, v in s['spec']['selector'].items())} (a typo in its selector, "
        "or pods whose labels changed?)"
        for s in found
    ]


def _wait_for_other_rollouts(release: ReleaseParts, service: Service, say: Say) -> None:
    """An HTTP check goes through the service to whatever it calls (the gateway to a backend):
    it waits until every other service of the run has rolled out, or failed to."""
    pipeline = release.pipeline
    if pipeline is None:
        return
    others = [s.name for s in release.env.services if s.name != service.name and pipeline.has(s.name, "rollout")]
    waiting = [name for name in others if not pipeline.done(name, "rollout")]
    if waiting:
        say(f"HTTP checks wait for the rollout of {_some(waiting)}")
    for name in waiting:
        with contextlib.suppress(Exception):  # a failed rollout is reported by that service's own test
            pipeline.wait(name, "rollout")


def _some(names: Sequence[str], shown: int = 3) -> str:
    """``names`` for a progress line: a few, then how many more (a line per service of 100 stays short)."""
    if len(names) <= shown + 1:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more"


def digests(release: ReleaseParts, service: Service, say: Say) -> DigestsReport | Skipped:
    """Each running container's digest against the release's (a sidecar's against its pinned one)."""
    workloads = release.workloads(service) or []
    if (idle := _runs_no_pod(workloads)) is not None:
        return idle
    expected, tag, source = release.expected(service.name)
    pods = pods_of_all(release.reader, workloads) + _bare_pods(release, service)
    running = containers_in(pods, image_repository=service.image, init=True)
    vendor, vendor_mismatches = pinned_mismatches(release.third_party(service.name), pods)
    if vendor:
        say(f"{len(vendor)} container(s) of images no service builds: {len(vendor_mismatches) or 'no'} mismatch(es)")
    if not expected or not running:
        return DigestsReport(expected, source, tuple(running), tuple(vendor_mismatches), third_party=tuple(vendor))
    mismatches = digest_mismatches(running, expected) + vendor_mismatches
    note = _on_delete_note(release, service) if mismatches else ""
    registry = release.registry_answers
    problem = registry_problem(registry, repository_path(running[0].image, registry.address), expected, tag)
    say(f"running {expected[:19]}... in {len(running)} container(s)" if not mismatches else "digest mismatch")
    return DigestsReport(expected, source, tuple(running), tuple(mismatches), problem, tuple(vendor), note)


def _bare_pods(release: ReleaseParts, service: Service) -> list[Any]:
    """The Pods of ``service``'s manifests that no controller owns, as they are now."""
    names = {o.name for o in _polled_objects(release, service) if o.kind == "Pod"}
    return [p for p in release.reader.items("Pod") if p["metadata"]["name"] in names] if names else []


def _on_delete_note(release: ReleaseParts, service: Service) -> str:
    names = {wl.name for wl in release.workloads(service) or [] if wl.kind == "StatefulSet"}
    held = [
        o["metadata"]["name"]
        for o in release.reader.items("StatefulSet")
        if o["metadata"]["name"] in names and (o.get("spec", {}).get("updateStrategy") or {}).get("type") == "OnDelete"
    ]
    if not held:
        return ""
    return (
        f"StatefulSet {', '.join(held)} updates OnDelete: the controller replaces no pod, so its pods run "
        "the old image until each is removed by hand (the controller then starts it at the new revision), "
        "or use updateStrategy RollingUpdate"
    )


def containers(release: ReleaseParts, service: Service, say: Say) -> ContainersReport | Skipped:
    """Inside one ready container: the user it runs as and the ports it listens on.

    A service of Jobs only is judged by how its pods exited: a finished pod has no running
    container to look into.
    """
    namespace = release.context.env.cluster.namespace
    workloads = release.workloads(service) or []
    if (idle := _runs_no_pod(workloads)) is not None:
        return idle
    if workloads and all(wl.kind == "Job" for wl in workloads):
        return _job_exits(release, workloads, say)
    errors: list[str] = []
    for attempt in range(EXEC_ATTEMPTS):
        ready = _ready_containers(release, workloads, service.image)
        if not ready:
            return ContainersReport(problems=(f"no ready container of {service.name} in {namespace} to look into",))
        pod, target = ready[attempt % len(ready)]
        key = facts_key(pod, target.container, target.digest)
        try:
            facts = release.container_facts(key, functools.partial(_inspect, release, target))
        except ExecForbidden as exc:
            return Skipped(
                f"context {release.clients.kube.context} may not exec into pods "
                f"(needs create pods/exec; the view role lacks it): {exc}"
            )
        except ExecFailed as exc:
            errors.append(str(exc))
            release.reader.forget_pods()  # the pod may have been replaced: look again
            time.sleep(2.0)
            continue
        say(f"pod {facts.pod}: uid {facts.uid}, listening {sorted(facts.listening)}")
        problems, relaxed = judge_container(facts, service, release.env)
        return ContainersReport(facts, problems, relaxed=relaxed)
    return ContainersReport(problems=("could not look into a container:\n" + "\n".join(errors),))


def _runs_no_pod(workloads: list[Workload]) -> Skipped | None:
    """The reason to skip a pod's check when no workload of a service runs a pod, and means to:
    a CronJob until its schedule, a workload scaled to 0 replicas (``replicas: 0``)."""
    cronjobs = [wl.title for wl in workloads if wl.kind == "CronJob"]
    scaled = [wl.title for wl in workloads if wl.kind in SCALABLE_KINDS and wl.desired == 0]
    if not workloads or len(cronjobs) + len(scaled) < len(workloads):
        return None
    reasons = [f"{', '.join(scaled)} scaled to 0 replicas: no pod runs"] if scaled else []
    if cronjobs:
        reasons.append(
            f"{', '.join(cronjobs)} runs no pod until its schedule: a CronJob is judged by being accepted (see rollout)"
        )
    return Skipped("; ".join(reasons))


def _job_exits(release: ReleaseParts, jobs: list[Workload], say: Say) -> ContainersReport | Skipped:
    lines: list[str] = []
    problems: list[str] = []
    for job in jobs:
        pods = release.reader.pods_of(job)
        if not pods:
            return Skipped(f"{job.title} has no pods left to judge (ttlSecondsAfterFinished removes finished ones)")
        seen, wrong = job_exits(job.name, pods, job.desired)
        lines += seen
        problems += wrong
    say(f"{len(lines)} Job pod(s) judged by exit code: {len(problems) or 'no'} problem(s)")
    return ContainersReport(problems=tuple(problems), exits=tuple(lines))


def _ready_containers(
    release: ReleaseParts, workloads: list[Workload], image: str
) -> list[tuple[Mapping[str, Any], RunningContainer]]:
    found = []
    for pod in pods_of_all(release.reader, workloads):
        found += [(pod, c) for c in containers_in([pod], image_repository=image) if c.ready]
    return found


def _inspect(release: ReleaseParts, target: RunningContainer) -> ContainerFacts:
    kube = release.clients.kube
    with release.exec_slots:
        return inspect_container(
            target.pod,
            target.container,
            release.context.env.cluster.namespace,
            context=kube.context,
            kubeconfig=getattr(kube, "kubeconfig", None) or None,
        )


def registry_answers(release: ReleaseParts) -> CachedManifests:
    """The environment's registry, asked once per (repository, reference) in this run."""
    return CachedManifests(release.clients.registry)


def rules(release: ReleaseParts, service: Service, say: Say) -> RulesReport | Skipped:
    """Every workload of the service through the team's rules, once it has rolled out."""
    if release.workload_rules is None:
        return Skipped("no pytest_deploybook_check_workload hook is implemented (see deploybook.plugin.hookspecs)")
    workloads = release.workloads(service) or []
    problems = [f"{wl.title}: {p}" for wl in workloads for p in release.workload_rules(wl, service)]
    say(f"{len(workloads)} workload(s) through the team's rules: {len(problems) or 'no'} problem(s)")
    return RulesReport(tuple(problems), tuple(wl.title for wl in workloads))


CHECKS: Mapping[str, Callable[[ReleaseParts, Service, Say], object]] = {
    "rollout": rollout,
    "endpoints": endpoints,
    "digests": digests,
    "containers": containers,
    "rules": rules,
}

AFTER_ROLLOUT = tuple(name for name in CHECKS if name != "rollout")
"""The checks that only need the rollout judged: in a release a service's run side by side
(they read different things and wait on different servers), so its slowest one, not their
sum, is what it takes."""


def one_line(error: BaseException) -> str:
    """An exception as one line (a deploybook error with its location and hint)."""
    if isinstance(error, DeploybookError):
        return error.one_line()
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def blocking_reason(outcome: object) -> str | None:
    """Why an outcome ends its service's chain (a failed rollout), or None."""
    return getattr(outcome, "blocks", None)
