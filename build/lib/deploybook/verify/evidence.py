"""What an operator needs to see when a rollout fails: conditions, events, log tails.

Gathered once, at the moment of the verdict, by reads only (list events, read pod logs);
the text form is attached to the report and carried by :class:`~deploybook.errors.RolloutFailed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from deploybook.cluster.watch import list_raw

__all__ = ["Evidence", "collect_evidence"]

LOG_TAIL_LINES = 40
EVENT_LIMIT = 25


@dataclass(frozen=True)
class Evidence:
    """What an operator needs to see why a rollout failed."""

    conditions: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    logs: Mapping[str, str] = field(default_factory=dict)  # "pod/container" -> log tail

    def as_text(self) -> str:
        """Render conditions, events and log tails as one plain-text attachment."""
        parts = ["Conditions:", *(f"  {c}" for c in self.conditions or ("(none)",))]
        parts += ["", "Recent events:", *(f"  {e}" for e in self.events or ("(none)",))]
        for where, text in self.logs.items():
            parts += ["", f"Log tail of {where}:", text.rstrip() or "(empty)"]
        return "\n".join(parts) + "\n"


def _fmt_condition(cond: Mapping[str, Any]) -> str:
    text = f"{cond.get('type')}={cond.get('status')}"
    if cond.get("reason"):
        text += f" {cond['reason']}"
    return text + (f": {cond['message']}" if cond.get("message") else "")


def _fmt_container(pod: str, cs: Mapping[str, Any]) -> str:
    state = cs.get("state") or {}
    kind = next(iter(state), "unknown")
    detail = state.get(kind) or {}
    reason = detail.get("reason", "")
    code = f" exit {detail['exitCode']}" if "exitCode" in detail else ""
    return (
        f"pod {pod} container {cs.get('name')}: {kind} {reason}{code}, "
        f"ready={cs.get('ready')}, restarts={cs.get('restartCount', 0)}"
    )


def _events(kube: Any, namespace: str, names: set[str]) -> tuple[str, ...]:
    items, _ = list_raw(kube.core.list_namespaced_event, namespace)
    mine = [e for e in items if (e.get("involvedObject") or {}).get("name") in names]
    mine.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return tuple(
        f"{e.get('lastTimestamp') or e.get('eventTime') or '-'} {e.get('type')} {e.get('reason')} "
        f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}: "
        f"{(e.get('message') or '').strip()} (x{e.get('count') or 1})"
        for e in mine[-EVENT_LIMIT:]
    )


def _log_tail(kube: Any, namespace: str, pod: str, cs: Mapping[str, Any]) -> str:
    previous = cs.get("restartCount", 0) > 0
    try:
        return str(
            kube.core.read_namespaced_pod_log(
                pod,
                namespace,
                container=cs["name"],
                tail_lines=LOG_TAIL_LINES,
                previous=previous,
            )
        )
    except ApiException as exc:
        return f"(log not readable: {exc.status} {exc.reason})"


def collect_evidence(
    kube: Any,
    kind: str,
    namespace: str,
    workload: Mapping[str, Any],
    pods: list[Mapping[str, Any]],
) -> Evidence:
    """Gather conditions, recent events and the log tails of unhealthy containers (reads only)."""
    name = workload.get("metadata", {}).get("name", "?")
    conditions = [f"{kind} {name}: {_fmt_condition(c)}" for c in workload.get("status", {}).get("conditions") or ()]
    logs: dict[str, str] = {}
    for pod in pods:
        pname = pod.get("metadata", {}).get("name", "?")
        conditions += [
            f"pod {pname}: {_fmt_condition(c)}"
            for c in pod.get("status", {}).get("conditions") or ()
            if c.get("status") != "True"
        ]
        for cs in pod.get("status", {}).get("containerStatuses") or ():
            conditions.append(_fmt_container(pname, cs))
            has_run = cs.get("restartCount", 0) > 0 or "waiting" not in (cs.get("state") or {})
            if has_run and (not cs.get("ready") or cs.get("restartCount", 0) > 0):
                logs[f"{pname}/{cs['name']}"] = _log_tail(kube, namespace, pname, cs)
    names = {name} | {p.get("metadata", {}).get("name", "") for p in pods}
    names |= {(p.get("metadata", {}).get("ownerReferences") or [{}])[0].get("name", "") for p in pods}
    try:
        events = _events(kube, namespace, names)
    except ApiException as exc:
        events = (f"(events not readable: {exc.status} {exc.reason})",)
    return Evidence(tuple(conditions), events, logs)
