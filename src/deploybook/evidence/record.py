"""The release record: what went where, and whether it worked.

``release.json`` is written to ``reports/ENV/RUN_ID/`` and kept in the cluster as the
ConfigMap ``deploybook-release`` in the environment's namespace, so a checks-only run from
any machine knows which digests should be running, a failed release can be resumed from
it (``--from-stage``), and production can promote exactly what passed on test.

Outcomes: ``passed``, ``failed``, ``interrupted`` (Ctrl-C: ``applied`` lists the services
whose apply finished, ``interrupted_during`` the test that was running) and ``rolled-back``
(``--rollback-on-failure`` restored the previous release; ``rollback`` says how, per service).

The ConfigMap keeps two records: ``release.json``, what should be running now (after a
rollback that is the restored release again, so checks-only compares against what runs), and
``passed-release.json``, the last release that passed (the target of the next rollback). The
record of a rolled-back attempt is kept under ``last-attempt.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploybook.errors import RecordError
from deploybook.release.state import FRAGMENTS, RunState, ServiceResult, utc_now

if TYPE_CHECKING:
    from deploybook.cluster.connect import KubeClients

RECORD_FILE = "release.json"
PASSED_KEY = "passed-release.json"
ATTEMPT_KEY = "last-attempt.json"
CONFIGMAP_NAME = "deploybook-release"
OUTCOMES = ("passed", "failed", "interrupted", "rolled-back")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ReleaseRecord:
    """One release: source, per-service images and digests, cluster, timings, outcome."""

    run_id: str
    environment: str
    namespace: str
    outcome: str
    started: str
    finished: str
    dry_run: bool = False
    git: dict[str, Any] = field(default_factory=dict)
    manifest_source: dict[str, Any] = field(default_factory=dict)
    services: dict[str, ServiceResult] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)
    promoted_from: str | None = None
    resumed_from: str | None = None
    applied: tuple[str, ...] = ()
    interrupted_during: str | None = None
    rollback: dict[str, Any] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        """True when the release ran for real (not dry-run) and everything passed."""
        return self.outcome == "passed" and not self.dry_run

    def digests(self) -> dict[str, str]:
        """Service name -> recorded digest, for services that have one."""
        return {name: s.digest for name, s in self.services.items() if s.digest}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, the JSON form of ``release.json``."""
        data = asdict(self)
        data["services"] = {name: s.to_dict() for name, s in self.services.items()}
        return data

    def to_json(self) -> str:
        """Stable, indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def record_from_dict(data: Any, *, source: str) -> ReleaseRecord:
    """Build a record from parsed JSON; RecordError names ``source`` and the missing key."""
    if not isinstance(data, dict):
        raise RecordError("a release record must be a JSON object", source=source)
    missing = [k for k in ("run_id", "environment", "namespace", "outcome", "services") if k not in data]
    if missing:
        raise RecordError(
            f"not a release record: missing {', '.join(missing)}",
            source=source,
            hint="pass a release.json written by deploybook",
        )
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise RecordError(f"unsupported record schema {data.get('schema')!r}", source=source)
    known = {k: v for k, v in data.items() if k in ReleaseRecord.__dataclass_fields__}
    known["services"] = {name: ServiceResult.from_dict({**svc, "name": name}) for name, svc in data["services"].items()}
    known.setdefault("started", "")
    known.setdefault("finished", "")
    known["applied"] = tuple(known.get("applied") or ())
    return ReleaseRecord(**known)


def write_record(run_dir: Path, record: ReleaseRecord) -> Path:
    """Write ``RUN_DIR/release.json``; returns its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RECORD_FILE
    path.write_text(record.to_json())
    return path


def load_file(path: Path | str) -> ReleaseRecord:
    """Read a ``release.json``; RecordError names the file when it is missing or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise RecordError("release record not found", source=str(path), hint="check --release") from e
    except (OSError, ValueError) as e:
        raise RecordError(f"cannot read release record: {e}", source=str(path)) from e
    return record_from_dict(data, source=str(path))


def save_to_cluster(
    kube: KubeClients, namespace: str, record: ReleaseRecord, *, running: ReleaseRecord | None = None
) -> None:
    """Create or replace the ConfigMap ``deploybook-release`` holding ``record``.

    ``running`` (after a rollback: the restored release) becomes ``release.json`` and
    ``record`` is kept as ``last-attempt.json``. The last passed release is carried over.
    """
    from deploybook.cluster.connect import api_errors

    current = running or record
    data = {RECORD_FILE: current.to_json()}
    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME}"
    with api_errors(kube.where, f"storing the release record in configmap {namespace}/{CONFIGMAP_NAME}"):
        _save(kube, namespace, record, running, data, source)


def _save(
    kube: KubeClients,
    namespace: str,
    record: ReleaseRecord,
    running: ReleaseRecord | None,
    data: dict[str, str],
    source: str,
) -> None:
    from kubernetes.client.exceptions import ApiException

    current = running or record
    try:
        passed = current if current.passed else _stored(kube, namespace, PASSED_KEY)
        if passed is not None:
            data[PASSED_KEY] = passed.to_json()
        if running is not None:
            data[ATTEMPT_KEY] = record.to_json()
        _put_configmap(kube, namespace, _configmap(namespace, current, data))
    except ApiException as e:
        raise RecordError(
            f"could not store the release record: {e.status} {e.reason}",
            source=source,
            hint="check that the identity may write ConfigMaps in the namespace",
        ) from e


def _configmap(namespace: str, record: ReleaseRecord, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "deploybook"},
            "annotations": {"deploybook.io/run-id": record.run_id, "deploybook.io/outcome": record.outcome},
        },
        "data": data,
    }


def _put_configmap(kube: KubeClients, namespace: str, body: Any) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        kube.core.replace_namespaced_config_map(CONFIGMAP_NAME, namespace, body)
    except ApiException as e:
        if e.status != 404:
            raise
        kube.core.create_namespaced_config_map(namespace, body)


def _stored(kube: KubeClients, namespace: str, key: str) -> ReleaseRecord | None:
    """The record under ``key`` of the ConfigMap, or None (no ConfigMap, no key)."""
    from kubernetes.client.exceptions import ApiException

    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME} key {key}"
    try:
        cm = kube.core.read_namespaced_config_map(CONFIGMAP_NAME, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    text = (cm.data or {}).get(key)
    if not text:
        return None
    try:
        return record_from_dict(json.loads(text), source=source)
    except ValueError as e:
        raise RecordError(f"malformed release record: {e}", source=source) from e


def load_last_passed(kube: KubeClients, namespace: str) -> ReleaseRecord | None:
    """The last release that passed in ``namespace`` (the rollback target), or None."""
    from kubernetes.client.exceptions import ApiException

    from deploybook.cluster.connect import api_errors

    try:
        with api_errors(kube.where, f"reading configmap {namespace}/{CONFIGMAP_NAME}"):
            passed = _stored(kube, namespace, PASSED_KEY)
    except ApiException as e:
        raise RecordError(
            f"could not read the release record: {e.status} {e.reason}",
            source=f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME}",
        ) from e
    if passed is not None:
        return passed
    current = load_from_cluster(kube, namespace)
    return current if current is not None and current.passed else None


def load_from_cluster(kube: KubeClients, namespace: str) -> ReleaseRecord | None:
    """The record kept in the cluster, or None when there is none yet."""
    from kubernetes.client.exceptions import ApiException

    from deploybook.cluster.connect import api_errors

    source = f"{kube.server} configmap {namespace}/{CONFIGMAP_NAME}"
    try:
        with api_errors(kube.where, f"reading configmap {namespace}/{CONFIGMAP_NAME}"):
            cm = kube.core.read_namespaced_config_map(CONFIGMAP_NAME, namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise RecordError(f"could not read the release record: {e.status} {e.reason}", source=source) from e
    text = (cm.data or {}).get(RECORD_FILE)
    if not text:
        raise RecordError(f"ConfigMap has no {RECORD_FILE}", source=source)
    try:
        return record_from_dict(json.loads(text), source=source)
    except ValueError as e:
        raise RecordError(f"malformed release record: {e}", source=source) from e


def read_fragments(run_dir: Path) -> tuple[dict[str, ServiceResult], dict[str, dict[str, Any]]]:
    """Service results and named extras (files starting with ``_``) written by the workers."""
    services: dict[str, ServiceResult] = {}
    extras: dict[str, dict[str, Any]] = {}
    for path in sorted((run_dir / FRAGMENTS).glob("*.json")):
        data = json.loads(path.read_text())
        if path.stem.startswith("_"):
            extras[path.stem[1:]] = data
        else:
            services[path.stem] = ServiceResult.from_dict(data)
    return services, extras


def build_record(
    state: RunState,
    *,
    outcome: str,
    cluster: dict[str, Any] | None = None,
    rollback: dict[str, Any] | None = None,
) -> ReleaseRecord:
    """The record of ``state``'s run, merged from every worker's fragments."""
    services, extras = read_fragments(state.run_dir)
    for name, result in state.results.items():
        services.setdefault(name, result)
    ordered = {name: services[name] for name in state.env.service_names if name in services}
    git = state.git
    source = state.source_record
    return ReleaseRecord(
        run_id=state.run_id,
        environment=state.env.name,
        namespace=state.env.cluster.namespace,
        outcome=outcome,
        started=state.started,
        finished=utc_now(),
        dry_run=state.dry_run,
        git={"branch": git.branch, "commit": git.commit, "dirty": git.dirty} if git else {},
        manifest_source=extras.get("manifests", {}),
        services=ordered,
        cluster=cluster or extras.get("cluster", {}),
        promoted_from=source.run_id if source and state.env.promote_from else None,
        resumed_from=source.run_id if source and state.from_stage else None,
        applied=tuple(n for n, s in ordered.items() if s.stages.get("apply", {}).get("outcome") == "passed"),
        interrupted_during=state.running_test if outcome == "interrupted" else None,
        rollback=rollback or {},
    )
