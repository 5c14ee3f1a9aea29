"""Diff and server-side apply of rendered objects.

``diff_objects`` sends every object to the API server as a server-side dry-run apply
(``dryRun=All``) with field manager ``deploybook``. The dry-run answer is the object as it
would be stored, the server's defaults included; compared with the live object (server-set
metadata and ``status`` left out, see ``deploybook.manifests.diff``) it gives an honest diff,
and an empty one when a release is applied again unchanged.

The dry-run is also the validation: if the server rejects any object, every rejection is
reported in one :class:`~deploybook.errors.ApplyError` and nothing is applied. A release
dry-runs each object once, in its preflight, before anything is applied; its apply stage
then applies for real (``validated=True``) and records the diff of the live object against
what the server stored. Namespace objects of a batch are applied before the others are
validated, because nothing can be validated in a namespace that does not exist yet.

A Job's pod template cannot change once the Job exists, and a release that changes the Job's
service changes it (its image, its release id), so such a Job is run again: the Job of the
earlier release, once finished (Complete or Failed), is deleted, its pods with it, and created
anew; its dry-run is a create under a generated name. A Job still running is refused, naming
it: deleting it would stop it mid-way. An unchanged service's Job is left as it is. A bare Pod
(a one-off task) is run again the same way: one that has ended (Succeeded or Failed) and whose
rendering changed is replaced, since a finished Pod updated in place never runs again; one still
running whose change the server refuses (a Pod's spec is immutable but for its images) is
refused, naming it.

Conflicts are forced (``force=true``): the release is the source of truth for
the fields deploybook renders, so a hand edit (``kubectl edit``, ``kubectl
scale``) of those fields is taken back, and the diff shown before the apply says
so. Fields deploybook does not set stay with their owners.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from deploybook.cluster.connect import KubeClients, api_errors, api_message, status_body
from deploybook.errors import ApplyError, ClusterError, OutsideNamespace, StillRunning
from deploybook.manifests.diff import normalize, unified_diff
from deploybook.manifests.render import MANAGED_BY, MANAGED_BY_LABEL

FIELD_MANAGER = "deploybook"
# Apply order: what others refer to comes first; kinds not listed go last.
KIND_ORDER = (
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "Service",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "Ingress",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
)


@dataclass(frozen=True)
class ObjectDiff:
    """What applying one object would change: ``action`` is create, update or unchanged.

    ``diff`` is a unified diff of the live object against the would-be object
    (empty when unchanged); Secret values are redacted. ``validated`` is False
    when the server could not dry-run the object because its namespace does not
    exist yet; the diff then shows the rendered object.
    """

    kind: str
    namespace: str | None
    name: str
    action: str
    diff: str
    validated: bool = True

    @property
    def changed(self) -> bool:
        """True unless applying the object changes nothing."""
        return self.action != "unchanged"


@dataclass(frozen=True)
class AppliedObject:
    """The outcome of applying one object: ``action`` is created, configured or unchanged."""

    kind: str
    namespace: str | None
    name: str
    action: str
    dry_run: bool
    uid: str | None = None
    resource_version: str | None = None
    validated: bool = True
    generation: int = 0
    diff: str = ""  # the live object against what was applied (or would be, in a dry run)
    api_version: str = ""


@dataclass(frozen=True)
class _Plan:
    obj: dict[str, Any]
    resource: Any
    live: dict[str, Any] | None
    would: dict[str, Any] | None  # the server's dry-run answer (None when not dry-run)
    validated: bool
    replaces: bool = False  # a finished Job or bare Pod deleted and created again

    def action(self, result: Mapping[str, Any]) -> str:
        if self.live is None:
            return "created"
        if self.replaces:
            return "replaced"
        return "unchanged" if normalize(self.live) == normalize(result) else "configured"


def apply_order(objs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Objects sorted by kind (Namespace first, workloads last); stable within a kind."""
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    return sorted((dict(o) for o in objs), key=lambda o: rank.get(o.get("kind", ""), len(KIND_ORDER)))


def diff_objects(
    kube: KubeClients, objs: Iterable[Mapping[str, Any]], *, field_manager: str = FIELD_MANAGER
) -> list[ObjectDiff]:
    """Diff each object against the cluster, changing nothing.

    Raises ApplyError listing every object the server would reject.
    """
    with api_errors(kube.where, "diffing against the live objects"):
        plans = _preflight(kube, apply_order(objs), field_manager)
    return [_diff(plan) for plan in plans]


def apply_objects(
    kube: KubeClients,
    objs: Iterable[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    validated: bool = False,
    field_manager: str = FIELD_MANAGER,
) -> list[AppliedObject]:
    """Server-side apply the objects in kind order; ``dry_run`` changes nothing.

    Unless ``validated`` (a release's preflight already dry-ran every object), all objects
    are validated by a dry-run first; if any is rejected, ApplyError lists every rejection
    and nothing is applied. Each result carries the diff of the live object against what was
    applied: one dry-run per object at most, and the diff is the change the server made.
    """
    ordered = apply_order(objs)
    namespaces = [o for o in ordered if o["kind"] == "Namespace"]
    others = [o for o in ordered if o["kind"] != "Namespace"]
    with api_errors(
        kube.where, "applying " + ", ".join(title(o) for o in ordered[:3]) + (" ..." if len(ordered) > 3 else "")
    ):
        results = _apply_plans(
            kube, _plans(kube, namespaces, field_manager, dry_run, validated), dry_run, field_manager
        )
        plans = _plans(kube, others, field_manager, dry_run, validated)
        return results + _apply_plans(kube, plans, dry_run, field_manager)


def _plans(
    kube: KubeClients, objs: list[dict[str, Any]], field_manager: str, dry_run: bool, validated: bool
) -> list[_Plan]:
    if validated and not dry_run:
        return [_read_plan(kube, obj, field_manager) for obj in objs]
    return _preflight(kube, objs, field_manager, allow_missing_namespace=dry_run)


def _read_plan(kube: KubeClients, obj: dict[str, Any], field_manager: str) -> _Plan:
    resource = _confined(_resource(kube, obj.get("apiVersion", ""), obj.get("kind", "")), obj, kube.where)
    live = _get_live(kube, resource, obj)
    if obj.get("kind") == "Pod" and live is not None and _finished(live) is not None:  # changed: replaced
        return _dry_run_plan(kube, obj, resource, live, field_manager, allow_missing_namespace=False)
    return _Plan(obj=obj, resource=resource, live=live, would=None, validated=True)


def ensure_namespace(kube: KubeClients, name: str, *, dry_run: bool = False) -> AppliedObject:
    """Create the namespace when it is absent; an existing one is left as it is."""
    with api_errors(kube.where, f"reading namespace {name}"):
        resource = _resource(kube, "v1", "Namespace")
        live = _get_live(kube, resource, {"kind": "Namespace", "metadata": {"name": name}})
    if live is not None:
        if (live.get("status") or {}).get("phase") == "Terminating":
            raise ApplyError(
                f"namespace {name} is being deleted",
                source=kube.where,
                hint="wait until it is gone, then run the release again",
            )
        return _outcome(
            _Plan(obj=live, resource=resource, live=live, would=live, validated=True), live, dry_run=dry_run
        )
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
    }
    return apply_objects(kube, [body], dry_run=dry_run)[0]


def _preflight(
    kube: KubeClients,
    objs: list[dict[str, Any]],
    field_manager: str,
    *,
    allow_missing_namespace: bool = True,
) -> list[_Plan]:
    """Dry-run every object; collect every rejection before raising."""
    plans: list[_Plan] = []
    failures: list[str] = []
    for obj in objs:
        try:
            plans.append(_plan(kube, obj, field_manager, allow_missing_namespace))
        except (OutsideNamespace, StillRunning):
            raise
        except ApplyError as e:
            failures.append(f"{title(obj)}: {e.message}")
    if failures:
        raise ApplyError(
            "the API server rejected "
            + ("1 object" if len(failures) == 1 else f"{len(failures)} objects")
            + ":\n  "
            + "\n  ".join(failures),
            source=kube.where,
            hint="fix the manifests; nothing was applied",
        )
    return plans


def _plan(kube: KubeClients, obj: dict[str, Any], field_manager: str, allow_missing_namespace: bool) -> _Plan:
    resource = _confined(_resource(kube, obj.get("apiVersion", ""), obj.get("kind", "")), obj, kube.where)
    return _dry_run_plan(kube, obj, resource, _get_live(kube, resource, obj), field_manager, allow_missing_namespace)


def _dry_run_plan(
    kube: KubeClients,
    obj: dict[str, Any],
    resource: Any,
    live: dict[str, Any] | None,
    field_manager: str,
    allow_missing_namespace: bool,
) -> _Plan:
    """The plan of ``obj`` from the server's dry-run answer (a create when it runs again)."""
    try:
        would = _server_side_apply(resource, obj, field_manager, dry_run=True)
    except DynamicApiError as e:
        if _runs_again(obj, live, e, kube.where):
            would = _dry_run_create(resource, obj, field_manager)
            return _Plan(obj=obj, resource=resource, live=live, would=would, validated=True, replaces=True)
        if not _is_missing_namespace(e):
            message = api_message(e)
            raise ApplyError(message + _known_remedy(obj, message)) from e
        if allow_missing_namespace:
            return _Plan(obj=obj, resource=resource, live=None, would=obj, validated=False)
        raise ApplyError(
            f"namespace {obj['metadata'].get('namespace')} does not exist (create it first: ensure_namespace)"
        ) from e
    if _finished_pod_changed(obj, live, would):
        would = _dry_run_create(resource, obj, field_manager)
        return _Plan(obj=obj, resource=resource, live=live, would=would, validated=True, replaces=True)
    return _Plan(obj=obj, resource=resource, live=live, would=would, validated=True)


def _apply_plans(kube: KubeClients, plans: list[_Plan], dry_run: bool, field_manager: str) -> list[AppliedObject]:
    results: list[AppliedObject] = []
    for plan in plans:
        if dry_run:
            assert plan.would is not None
            results.append(_outcome(plan, plan.would, dry_run=True))
            continue
        try:
            if plan.replaces:
                _delete_finished(plan)
            try:
                applied = _server_side_apply(plan.resource, plan.obj, field_manager, dry_run=False)
            except DynamicApiError as e:
                if plan.replaces or not _runs_again(plan.obj, plan.live, e, kube.where):
                    raise
                plan = dataclasses.replace(plan, replaces=True)
                _delete_finished(plan)
                applied = _server_side_apply(plan.resource, plan.obj, field_manager, dry_run=False)
        except DynamicApiError as e:
            done = ", ".join(f"{r.kind}/{r.name}" for r in results) or "none"
            raise ApplyError(
                f"{title(plan.obj)}: {api_message(e)} (already applied: {done})",
                source=kube.where,
                hint="fix the cause and run the release again; applying is idempotent",
            ) from e
        results.append(_outcome(plan, applied, dry_run=False))
    return results


def _resource(kube: KubeClients, api_version: str, kind: str) -> Any:
    try:
        return kube.dynamic.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError as e:
        raise ApplyError(
            f"the cluster serves no kind {kind} in {api_version}",
            source=kube.where,
            hint="check apiVersion and kind, or install the CRD that defines it",
        ) from e


def _confined(resource: Any, obj: Mapping[str, Any], where: str) -> Any:
    """The resource, unless the cluster says a kind rendered into a namespace is cluster-scoped.

    The renderer knows the built-in cluster-scoped kinds; a custom resource's scope is known
    only to the cluster. Such an object the environment did not allow by name (render gave it
    the namespace) is refused before anything is sent.
    """
    namespace = obj["metadata"].get("namespace")
    if namespace and not resource.namespaced:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        raise OutsideNamespace(
            f"{name} is cluster-scoped: a release of this environment stays in namespace {namespace}",
            source=where,
            hint=f"remove it from the manifests, or allow it by name: confinement: {{cluster_scoped: [{name}]}} "
            "in the environment file",
        )
    return resource


def _get_live(kube: KubeClients, resource: Any, obj: Mapping[str, Any]) -> dict[str, Any] | None:
    metadata = obj["metadata"]
    namespace = metadata.get("namespace") if resource.namespaced else None
    try:
        return _as_dict(resource.get(name=metadata["name"], namespace=namespace))
    except DynamicApiError as e:
        if e.status == 404:
            return None
        raise ClusterError(f"cannot read {title(obj)}: {api_message(e)}", source=kube.where) from e


def _server_side_apply(resource: Any, obj: dict[str, Any], field_manager: str, *, dry_run: bool) -> dict[str, Any]:
    metadata = obj["metadata"]
    return _as_dict(
        resource.server_side_apply(
            body=obj,
            name=metadata["name"],
            namespace=metadata.get("namespace") if resource.namespaced else None,
            field_manager=field_manager,
            force_conflicts=True,
            dry_run="All" if dry_run else None,
        )
    )


def _as_dict(instance: Any) -> dict[str, Any]:
    return instance.to_dict() if hasattr(instance, "to_dict") else dict(instance)


def _is_missing_namespace(error: ApiException) -> bool:
    if error.status != 404:
        return False
    details = status_body(error).get("details") or {}
    return details.get("kind") == "namespaces"


_REFUSALS = {  # kind -> what the API server says when a live object of it cannot take the change
    "Job": "field is immutable",
    "Pod": "pod updates may not change fields",
}
GONE_S = 60.0  # how long a finished Job's or Pod's deletion may take (a Job's pods go first)


def _runs_again(obj: Mapping[str, Any], live: Mapping[str, Any] | None, error: ApiException, where: str) -> bool:
    """True when ``obj`` is a Job or bare Pod the server refused to change and the live one has
    finished; one still running raises StillRunning naming it (nothing is deleted)."""
    kind = obj.get("kind", "")
    refusal = _REFUSALS.get(kind)
    if refusal is None or live is None or error.status != 422 or refusal not in api_message(error):
        return False
    if _finished(live) is not None:
        return True
    meta = obj.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace")
    if kind == "Job":
        raise StillRunning(
            f"{title(obj)} of an earlier release is still running, and a Job's pod template cannot "
            "change: deploybook replaces a Job only once it has finished (Complete or Failed)",
            hint=f"wait for it (kubectl wait --for=condition=complete job/{name} -n {namespace}) "
            "or delete it, then run the release again",
            source=where,
        )
    raise StillRunning(
        f"{title(obj)} of an earlier release is still running, and a Pod's spec cannot change but for "
        "its images: deploybook replaces a bare Pod only once it has ended (Succeeded or Failed)",
        hint=f"wait for it to end, or delete it (kubectl delete pod {name} -n {namespace}), then run the release again",
        source=where,
    )


def _finished_pod_changed(obj: Mapping[str, Any], live: Mapping[str, Any] | None, would: Mapping[str, Any]) -> bool:
    """True for a bare Pod that has ended and that this rendering changes: updated in place,
    its containers would not run again (an ended Pod stays ended), so it is replaced."""
    if obj.get("kind") != "Pod" or live is None or _finished(live) is None:
        return False
    return normalize(live) != normalize(would)


def _finished(obj: Mapping[str, Any]) -> str | None:
    """How a Job (``Complete``, ``Failed``) or a Pod (``Succeeded``, ``Failed``) ended, else None."""
    status = obj.get("status") or {}
    if obj.get("kind") == "Pod":
        phase = status.get("phase")
        return str(phase) if phase in ("Succeeded", "Failed") else None
    return _job_end(obj)


def _job_end(job: Mapping[str, Any]) -> str | None:
    """``Complete`` or ``Failed`` once a Job has ended, else None."""
    for condition in (job.get("status") or {}).get("conditions") or ():
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return None


def _dry_run_create(resource: Any, obj: dict[str, Any], field_manager: str) -> dict[str, Any]:
    """The server's answer to creating ``obj`` anew (dry-run, under a generated name: its own is taken)."""
    metadata = obj["metadata"]
    body = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "name"}}
    body["metadata"]["generateName"] = f"{metadata['name'][:56]}-"
    would = _as_dict(
        resource.create(body=body, namespace=metadata.get("namespace"), field_manager=field_manager, dry_run="All")
    )
    return {**would, "metadata": {**(would.get("metadata") or {}), "name": metadata["name"]}}


def _delete_finished(plan: _Plan) -> None:
    """Delete the live Job (and its pods) or Pod of ``plan`` (this very one: its uid is a
    precondition), then wait until it is gone, so the new one starts with no old pod beside it."""
    assert plan.live is not None
    metadata = plan.live["metadata"]
    name, namespace, kind = metadata["name"], metadata.get("namespace"), plan.obj["kind"]
    body = {"propagationPolicy": "Foreground", "preconditions": {"uid": metadata.get("uid")}}
    try:
        plan.resource.delete(name=name, namespace=namespace, body=body)
    except DynamicApiError as e:
        if e.status == 409:  # the uid precondition: another object by that name took its place
            raise ApplyError(
                f"{kind}/{name} -n {namespace} was replaced by someone else while this release ran it again",
                hint=f"see who runs it (kubectl get {kind.lower()} {name} -n {namespace} -o yaml), "
                "then run the release again",
            ) from e
        if e.status != 404:  # 404: gone already
            raise
    deadline = time.monotonic() + GONE_S
    while time.monotonic() < deadline:
        try:
            plan.resource.get(name=name, namespace=namespace)
        except DynamicApiError as e:
            if e.status == 404:
                return
            raise
        time.sleep(0.2)
    raise ApplyError(
        f"{kind}/{name} -n {namespace} of an earlier release was deleted to run it again, "
        f"and is still there after {GONE_S:.0f} s",
        hint=f"see why it stays (kubectl get {kind.lower()} {name} -n {namespace} -o yaml: finalizers), "
        "then release again",
    )


_RECREATE_KEEPS_ROLLING_UPDATE = "may not be specified when strategy `type` is 'Recreate'"


def _known_remedy(obj: Mapping[str, Any], message: str) -> str:
    """What to do about a rejection server-side apply cannot get past on its own, or nothing."""
    if _RECREATE_KEEPS_ROLLING_UPDATE in message:
        # The live spec.strategy.rollingUpdate was defaulted, so no field manager owns it and an
        # apply cannot drop it; kubectl's client-side apply drops it through retainKeys.
        meta = obj.get("metadata") or {}
        patch = '{"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}'
        return (
            "; the live Deployment keeps the defaulted spec.strategy.rollingUpdate, which server-side "
            f"apply cannot remove: switch it once with `kubectl patch deployment {meta.get('name')} "
            f"-n {meta.get('namespace')} --type=merge -p '{patch}'`, then release again"
        )
    return ""


def _outcome(plan: _Plan, result: Mapping[str, Any], *, dry_run: bool) -> AppliedObject:
    metadata = result.get("metadata") or {}
    kind = str(result.get("kind") or plan.obj.get("kind", ""))
    name = f"{kind}/{metadata.get('namespace') or '-'}/{metadata.get('name', '')}"
    return AppliedObject(
        kind=kind,
        namespace=metadata.get("namespace"),
        name=metadata.get("name", ""),
        action=plan.action(result),
        dry_run=dry_run,
        uid=None if dry_run else metadata.get("uid"),
        resource_version=None if dry_run else metadata.get("resourceVersion"),
        validated=plan.validated,
        generation=int(metadata.get("generation") or 0),
        diff=unified_diff(kind, plan.live, result, name)[1],
        api_version=str(result.get("apiVersion") or plan.obj.get("apiVersion", "")),
    )


def title(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` (``-n namespace``) of an object, for messages."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace")
    return f"{obj.get('kind')}/{metadata.get('name')}" + (f" -n {namespace}" if namespace else "")


def _diff(plan: _Plan) -> ObjectDiff:
    obj = plan.obj
    assert plan.would is not None
    name = f"{obj['kind']}/{obj['metadata'].get('namespace') or '-'}/{obj['metadata']['name']}"
    action, text = unified_diff(obj["kind"], plan.live, plan.would, name)
    return ObjectDiff(
        kind=obj["kind"],
        namespace=obj["metadata"].get("namespace"),
        name=obj["metadata"]["name"],
        action=action,
        diff=text,
        validated=plan.validated,
    )
