"""Which workloads belong to a service, and which pods and Services belong to a workload.

A release knows its workloads exactly: they are the objects it rendered and applied. A
checks run learns them from the release record (``Kind/name`` per service), and falls back
to the workloads of the namespace whose pod templates run the service's image. Pure
functions over API JSON; nothing here talks to the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deploybook.cluster.selectors import label_selector, selector_matches
from deploybook.images.references import image_matches

__all__ = [
    "TEMPLATE_KINDS",
    "Workload",
    "namespace_workloads",
    "pod_template",
    "services_selecting",
    "services_selecting_nothing",
    "workloads_in",
    "workloads_running",
]

TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


def pod_template(obj: Mapping[str, Any], kind: str | None = None) -> Mapping[str, Any]:
    """The pod template of a workload object, a CronJob's in its jobTemplate ({} for other kinds)."""
    spec = obj.get("spec") or {}
    if (kind or obj.get("kind")) == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return template if isinstance(template, Mapping) else {}


@dataclass(frozen=True)
class Workload:
    """One workload of a service: what it is, how its pods are selected, what it runs."""

    kind: str
    name: str
    match: Mapping[str, Any] = field(default_factory=dict)  # spec.selector as the API has it
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    desired: int = 1
    named_ports: Mapping[str, int] = field(default_factory=dict)  # container port name -> number
    images: tuple[str, ...] = ()
    generation: int = 0  # the generation the apply returned (0: not applied by this run)
    uid: str = ""  # the uid the apply returned: a Job run again is a new object under the same name

    @property
    def title(self) -> str:
        """``Kind/name``, as the release record lists it."""
        return f"{self.kind}/{self.name}"

    @property
    def selector(self) -> str:
        """The label selector string of the workload's pods."""
        return label_selector({"spec": {"selector": self.match}})

    def owns(self, pod: Mapping[str, Any]) -> bool:
        """True when ``pod``'s labels satisfy this workload's selector."""
        return selector_matches(self.match, pod.get("metadata", {}).get("labels") or {})

    def pods(self, pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """This workload's pods among ``pods``."""
        return [p for p in pods if self.owns(p)]

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], kind: str | None = None) -> Workload:
        """The workload an API object describes; ``kind`` for an item of a list, which has none."""
        spec = obj.get("spec") or {}
        kind = kind or str(obj.get("kind"))
        template = pod_template(obj, kind)
        containers = (template.get("spec") or {}).get("containers") or []
        # A CronJob has no selector, so it owns no pods: its Jobs' runs come and go.
        desired = 0 if kind == "CronJob" else spec.get("completions") or 1 if kind == "Job" else spec.get("replicas", 1)
        ports = {
            str(p["name"]): int(p["containerPort"])
            for c in containers
            for p in c.get("ports") or ()
            if p.get("name") and p.get("containerPort")
        }
        return cls(
            kind=kind,
            name=str(obj.get("metadata", {}).get("name")),
            match=spec.get("selector") or _generated_selector(kind, obj),
            pod_labels=(template.get("metadata") or {}).get("labels") or {},
            desired=int(desired),
            named_ports=ports,
            images=tuple(str(c.get("image", "")) for c in containers),
            generation=int(obj.get("metadata", {}).get("generation") or 0),
        )


def _generated_selector(kind: str, obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Job written without a selector gets one from its controller; its pods carry ``job-name``."""
    if kind != "Job":
        return {}
    return {"matchLabels": {"job-name": str(obj.get("metadata", {}).get("name"))}}


def workloads_in(objs: Iterable[Mapping[str, Any]]) -> list[Workload]:
    """The workloads among rendered or applied objects, in their order."""
    return [Workload.from_object(o) for o in objs if o.get("kind") in TEMPLATE_KINDS and pod_template(o)]


def namespace_workloads(listed: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Workload]:
    """The workloads of a namespace listing (``listed``: kind -> objects, items without a kind)."""
    return [Workload.from_object(obj, kind) for kind in TEMPLATE_KINDS for obj in listed.get(kind, ())]


def workloads_running(image: str, workloads: Iterable[Workload], *, named: Sequence[str] = ()) -> list[Workload]:
    """The workloads among the namespace's (``workloads``) that belong to a service.

    ``named`` (``Kind/name`` from a release record) picks them by name; without names, the
    workloads whose pod templates run ``image`` (any registry, tag or digest) are taken.
    """
    if named:
        return [w for w in workloads if w.title in named]
    return [w for w in workloads if any(image_matches(i, image) for i in w.images)]


def services_selecting_nothing(
    services: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], workloads: Sequence[Workload]
) -> list[Mapping[str, Any]]:
    """The Services with a selector that matches no pod of ``pods`` and no pod template of
    ``workloads``: a typo in the selector, or pods whose labels changed. A Service without a
    selector (ExternalName, Endpoints kept by hand) selects nothing on purpose."""
    labels = [(p.get("metadata") or {}).get("labels") or {} for p in pods] + [w.pod_labels for w in workloads]
    return [
        s
        for s in services
        if (sel := (s.get("spec") or {}).get("selector"))
        and not any(all(have.get(k) == v for k, v in sel.items()) for have in labels)
    ]


def services_selecting(services: Iterable[Mapping[str, Any]], workloads: Sequence[Workload]) -> list[Mapping[str, Any]]:
    """The Services whose selector matches the pod labels of any of ``workloads``."""
    return [
        s
        for s in services
        if (sel := (s.get("spec") or {}).get("selector"))
        and any(all(w.pod_labels.get(k) == v for k, v in sel.items()) for w in workloads)
    ]
