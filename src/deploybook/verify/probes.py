"""Probe failures: a readiness that never passes, named from the namespace's events.

This module owns reading the kubelet's probe events. The kubelet records each failed probe as
an Event with reason ``Unhealthy`` and type ``Warning``, on the pod, with ``fieldPath``
``spec.containers{NAME}`` and a message ``"<Readiness|Liveness|Startup> probe failed: <output>"``
(``"... probe errored and resulted in <state> state: <error>"`` when the probe could not run).
Repeats are aggregated into one Event: ``count`` with ``firstTimestamp``/``lastTimestamp`` for
the core recorder, ``series.count`` with ``eventTime``/``series.lastObservedTime`` for the
events.k8s.io recorder; both shapes, and events.k8s.io/v1's own field names, are read here.

``budget_exceeded`` is a failure budget in the manner of werf's failures-allowed-per-replica,
counted per pod: one pod with more than its allowance breaks it, however healthy the others are.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deploybook.verify.workload_status import api_time

__all__ = ["BUDGET_PROBES", "PROBES", "ProbeFailure", "budget_exceeded", "describe", "probe_failures"]

PROBES = ("Readiness", "Liveness", "Startup")
# A startup probe is meant to fail until the application is up (failureThreshold x period);
# when it runs out the kubelet restarts the container, and that restart is judged as a crash.
BUDGET_PROBES = ("Readiness", "Liveness")
_MESSAGE = re.compile(r"^(Readiness|Liveness|Startup) probe (?:failed|errored[^:]*):\s?(.*)$", re.DOTALL)
_STATUS_CODE = re.compile(r"HTTP probe failed with statuscode: (\d{3})\b")
_FIELD_PATH = re.compile(r"^spec\.(?:containers|initContainers|ephemeralContainers)\{([^}]+)\}$")


@dataclass(frozen=True)
class ProbeFailure:
    """The failures of one probe of one container: how often, the latest message, when."""

    pod: str
    container: str | None
    probe: str  # Readiness, Liveness or Startup
    count: int
    message: str  # the latest event message, as the kubelet wrote it
    status_code: int | None  # the HTTP status in the latest message, if any
    first_seen: datetime | None
    last_seen: datetime | None

    @property
    def detail(self) -> str:
        """The probe's output without the kubelet's ``"Readiness probe failed: "`` prefix."""
        match = _MESSAGE.match(self.message)
        return (match.group(2) if match else self.message).strip()


@dataclass(frozen=True)
class _Occurrence:
    pod: str
    container: str | None
    probe: str
    count: int
    message: str
    first_seen: datetime | None
    last_seen: datetime | None


def probe_failures(
    events: Iterable[Mapping[str, Any]],
    pod_names: Collection[str],
    *,
    pod_uids: Collection[str] | None = None,
) -> list[ProbeFailure]:
    """The probe failures of the named pods, one per (pod, container, probe), sorted by those.

    ``events`` are Event objects as the list API returns them. ``pod_uids``, when given, also
    drops events of an earlier pod with the same name (a StatefulSet's pods keep their names).
    Several events for one probe (its output changed) are summed; the latest message wins.
    """
    grouped: dict[tuple[str, str | None, str], list[_Occurrence]] = {}
    for event in events:
        occurrence = _occurrence(event, pod_names, pod_uids)
        if occurrence is not None:
            key = (occurrence.pod, occurrence.container, occurrence.probe)
            grouped.setdefault(key, []).append(occurrence)
    return [_merge(grouped[key]) for key in sorted(grouped, key=_sort_key)]


def budget_exceeded(
    failures: Iterable[ProbeFailure],
    *,
    replicas: int,
    allowed_per_replica: int,
    probes: Collection[str] = BUDGET_PROBES,
) -> ProbeFailure | None:
    """The failure that broke the budget: more than ``allowed_per_replica`` failures on one pod.

    Failures of ``probes`` are summed per pod; of the pods over the allowance, the one with the
    most failures is reported, by its most frequent probe failure. ``replicas`` is kept for
    werf's call shape: counted per pod, the budget does not depend on it.
    """
    if replicas < 0 or allowed_per_replica < 0:
        raise ValueError(
            f"budget_exceeded needs replicas >= 0 and allowed_per_replica >= 0, "
            f"not {replicas} and {allowed_per_replica}"
        )
    per_pod: dict[str, list[ProbeFailure]] = {}
    for failure in failures:
        if failure.probe in probes:
            per_pod.setdefault(failure.pod, []).append(failure)
    totals = {pod: sum(f.count for f in fs) for pod, fs in per_pod.items()}
    over = sorted((pod for pod, total in totals.items() if total > allowed_per_replica), key=lambda p: (-totals[p], p))
    if not over:
        return None
    return max(per_pod[over[0]], key=lambda f: (f.count, _recency(f.last_seen)))


def describe(failure: ProbeFailure) -> str:
    """One line: ``pod P container C: Readiness probe failed 4 times, latest: <output>``."""
    where = f"pod {failure.pod}" + (f" container {failure.container}" if failure.container else "")
    times = "1 time" if failure.count == 1 else f"{failure.count} times"
    code = f" (status code {failure.status_code})" if failure.status_code is not None else ""
    return f"{where}: {failure.probe} probe failed {times}, latest: {failure.detail}{code}"


def _occurrence(
    event: Mapping[str, Any], pod_names: Collection[str], pod_uids: Collection[str] | None
) -> _Occurrence | None:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    if event.get("reason") != "Unhealthy" or involved.get("kind") != "Pod":
        return None
    if involved.get("name") not in pod_names:
        return None
    if pod_uids is not None and involved.get("uid") and involved["uid"] not in pod_uids:
        return None
    message = str(event.get("message") or event.get("note") or "")
    match = _MESSAGE.match(message)
    if match is None:
        return None
    first, last = _seen(event)
    return _Occurrence(
        pod=str(involved["name"]),
        container=_container(involved.get("fieldPath")),
        probe=match.group(1),
        count=_count(event),
        message=message.strip(),
        first_seen=first,
        last_seen=last,
    )


def _container(field_path: Any) -> str | None:
    match = _FIELD_PATH.match(field_path) if isinstance(field_path, str) else None
    return match.group(1) if match else None


def _count(event: Mapping[str, Any]) -> int:
    series = event.get("series") or {}
    for value in (series.get("count"), event.get("count"), event.get("deprecatedCount")):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 1


def _seen(event: Mapping[str, Any]) -> tuple[datetime | None, datetime | None]:
    series = event.get("series") or {}
    first = api_time(event.get("firstTimestamp")) or api_time(event.get("deprecatedFirstTimestamp"))
    first = first or api_time(event.get("eventTime"))
    last = api_time(series.get("lastObservedTime")) or api_time(event.get("lastTimestamp"))
    last = last or api_time(event.get("deprecatedLastTimestamp")) or api_time(event.get("eventTime")) or first
    return first, last


def _recency(seen: datetime | None) -> float:
    return seen.timestamp() if seen is not None else float("-inf")


def _merge(occurrences: list[_Occurrence]) -> ProbeFailure:
    latest = max(occurrences, key=lambda o: _recency(o.last_seen))
    firsts = [o.first_seen for o in occurrences if o.first_seen is not None]
    lasts = [o.last_seen for o in occurrences if o.last_seen is not None]
    code = _STATUS_CODE.search(latest.message)
    return ProbeFailure(
        pod=latest.pod,
        container=latest.container,
        probe=latest.probe,
        count=sum(o.count for o in occurrences),
        message=latest.message,
        status_code=int(code.group(1)) if code else None,
        first_seen=min(firsts) if firsts else None,
        last_seen=max(lasts) if lasts else None,
    )


def _sort_key(key: tuple[str, str | None, str]) -> tuple[str, str, int]:
    pod, container, probe = key
    return pod, container or "", PROBES.index(probe)
