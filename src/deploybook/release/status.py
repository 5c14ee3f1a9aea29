"""Deployment status across environments: what runs where, from which commit, and whether it
matches the record.

For each environment (read-only: its ``read_only_context`` when the file names one), one row
per service: the digests its pods run, the digest the release record in the namespace says
should run, the release that introduced it, the commit of its code, when that release
finished, ready pods of desired, drift (running != recorded) and a verdict. Only reads are
made: the record's ConfigMap, and one list per kind of the namespace. Environments are asked
side by side; one that cannot be reached gives rows that say why, not a failure of the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

from deploybook.config.model import Environment, Service
from deploybook.errors import DeploybookError
from deploybook.evidence.record import ReleaseRecord
from deploybook.evidence.record_store import load_from_cluster
from deploybook.release.clients import connect_environment
from deploybook.verify.digests import containers_in
from deploybook.verify.namespace import SnapshotReader, pods_of_all
from deploybook.verify.workloads import Workload, namespace_workloads, workloads_running

__all__ = ["COLUMNS", "ServiceStatus", "environment_status", "format_status", "gather", "status_of", "verdict"]

OK = "ok"


@dataclass(frozen=True)
class ServiceStatus:
    """One service in one environment, as the cluster and its record say."""

    environment: str
    service: str
    running: tuple[str, ...] = ()
    recorded: str | None = None
    release_id: str | None = None
    source_commit: str | None = None
    when: str | None = None
    ready: int = 0
    desired: int = 0
    outcome: str | None = None  # of the recorded release
    problem: str = ""  # why the environment could not be read

    @property
    def drift(self) -> bool:
        """True when a pod runs something else than the record says (or nothing runs it)."""
        return self.recorded is not None and set(self.running) != {self.recorded}

    @property
    def verdict(self) -> str:
        """``ok``, or what is wrong: unreachable, not released, release failed, drift, not ready."""
        return verdict(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``--json``)."""
        return {**asdict(self), "running": list(self.running), "drift": self.drift, "verdict": self.verdict}


def verdict(row: ServiceStatus) -> str:
    """The first of the row's problems, in the order an operator fixes them."""
    if row.problem:
        return "unreachable"
    if row.recorded is None:
        return "not released" if not row.running else "unrecorded"
    if row.outcome not in ("passed", "rolled-back"):
        return f"release {row.outcome}"
    if row.drift:
        return "drift"
    if row.ready < row.desired:
        return "not ready"
    return OK


def status_of(env: Environment, record: ReleaseRecord | None, reader: Any) -> list[ServiceStatus]:
    """The rows of ``env`` from its record and a namespace reader (pure given the reader)."""
    listed = {kind: reader.items(kind) for kind in ("Deployment", "StatefulSet", "DaemonSet")}
    workloads = namespace_workloads(listed)
    return [_row(env, service, record, reader, workloads) for service in env.services]


def _row(
    env: Environment, service: Service, record: ReleaseRecord | None, reader: Any, found_in: Sequence[Workload]
) -> ServiceStatus:
    recorded = record.services.get(service.name) if record else None
    named = recorded.workloads if recorded else ()
    workloads = workloads_running(service.image, found_in, named=named)
    pods = [p for p in pods_of_all(reader, workloads) if not p.get("metadata", {}).get("deletionTimestamp")]
    containers = containers_in(pods, image_repository=service.image)
    ready_pods = {c.pod for c in containers if c.ready} - {c.pod for c in containers if not c.ready}
    found = ServiceStatus(
        environment=env.name,
        service=service.name,
        running=tuple(sorted({c.digest or "not pulled" for c in containers})),
        ready=len(ready_pods),
        desired=sum(w.desired for w in workloads),
    )
    if record is None or recorded is None:
        return found
    return replace(
        found,
        recorded=recorded.digest,
        release_id=recorded.deployed_by or record.run_id,
        source_commit=str(recorded.source.get("commit") or "") or None,
        when=record.finished,
        outcome=record.outcome,
    )


def environment_status(env: Environment, *, context: str | None = None) -> list[ServiceStatus]:
    """The rows of ``env``, read with ``context`` (default: its read-only context, else its own)."""
    try:
        kube = connect_environment(env, context or env.cluster.read_only_context)
        record = load_from_cluster(kube, env.cluster.namespace)
        return status_of(env, record, SnapshotReader(kube, env.cluster.namespace))
    except DeploybookError as e:
        return [ServiceStatus(env.name, s.name, problem=e.one_line()) for s in env.services]


def gather(environments: Sequence[Environment]) -> list[ServiceStatus]:
    """Every environment's rows, asked side by side, in the order given."""
    with ThreadPoolExecutor(max_workers=min(8, len(environments)) or 1) as pool:
        return [row for rows in pool.map(environment_status, environments) for row in rows]


COLUMNS = ("environment", "service", "running", "recorded", "release", "source", "when", "ready", "drift", "verdict")


def _short(digest: str) -> str:
    return digest[:19] + "…" if digest.startswith("sha256:") else digest


def _cells(row: ServiceStatus) -> list[str]:
    return [
        row.environment,
        row.service,
        ",".join(_short(d) for d in row.running) or "-",
        _short(row.recorded) if row.recorded else "-",
        row.release_id or "-",
        (row.source_commit or "-")[:12],
        (row.when or "-")[:19],
        f"{row.ready}/{row.desired}",
        "yes" if row.drift else "no",
        row.verdict,
    ]


def format_status(rows: Iterable[ServiceStatus]) -> list[str]:
    """The table as lines; an unreachable environment's reason follows the table."""
    rows = list(rows)
    table = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    problems = {r.environment: r.problem for r in rows if r.problem}
    return lines + [f"{name}: {problem}" for name, problem in problems.items()]
