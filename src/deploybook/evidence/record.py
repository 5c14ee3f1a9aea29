"""The release record: what went where, and whether it worked.

``release.json`` is written to ``reports/ENV/RUN_ID/`` and kept in the cluster as the
ConfigMap ``deploybook-release`` in the environment's namespace, so a checks-only run from
any machine knows which digests should be running, a failed release can be resumed from
it (``--from-stage``), and production can promote exactly what passed on test.

Outcomes: ``passed``, ``failed``, ``interrupted`` (Ctrl-C: ``applied`` lists the services
whose apply finished, ``interrupted_during`` the test that was running) and ``rolled-back``
(``--rollback-on-failure`` restored the previous release; ``rollback`` says how, per service).

This module is the record itself and its file, and the short form a passed release keeps in
the history a promotion is proven against (:class:`PassedRelease`);
``deploybook.evidence.record_store`` keeps both in the cluster.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploybook.errors import RecordError

RECORD_FILE = "release.json"
OUTCOMES = ("passed", "failed", "interrupted", "rolled-back")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ServiceRecord:
    """What a release did for one service: its image, digest, manifests and stage outcomes.

    ``source`` names the code the image was built from (repository, ref, commit);
    ``workloads`` the ``Kind/name`` of every workload its manifests hold, so a checks run
    knows what to look at without guessing from images; ``objects`` every object its manifests
    applied (``apiVersion``, ``kind``, ``name``, ``namespace``), so a checks run also judges the
    bare Pods, custom resources and Services among them. ``third_party`` lists every image its
    manifests run that no service builds: the manifest and container, the image as written, the
    reference resolved, the registry asked, the digest and the pinned reference.
    """

    name: str
    image: str | None = None
    tag: str | None = None
    image_id: str | None = None
    digest: str | None = None
    digest_source: str | None = None
    deployed_by: str | None = None
    manifests: dict[str, str] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    workloads: tuple[str, ...] = ()
    objects: tuple[dict[str, str], ...] = ()
    third_party: tuple[dict[str, str], ...] = ()

    @property
    def ref(self) -> str | None:
        """The pinned image reference ``repository@sha256:...`` once the digest is known."""
        return f"{self.image}@{self.digest}" if self.image and self.digest else None

    def stage_outcome(self, stage: str) -> str | None:
        """``passed``, ``failed``, ``skipped`` or None when the stage did not run."""
        entry = self.stages.get(stage) or {}
        return entry.get("outcome")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON, including the pinned ``ref``."""
        data = asdict(self)
        data["workloads"] = list(self.workloads)
        data["objects"] = [dict(entry) for entry in self.objects]
        data["third_party"] = [dict(entry) for entry in self.third_party]
        return {**data, "ref": self.ref}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceRecord:
        """Inverse of :meth:`to_dict` (unknown keys ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["workloads"] = tuple(known.get("workloads") or ())
        known["objects"] = tuple(dict(e) for e in known.get("objects") or () if isinstance(e, dict))
        known["third_party"] = tuple(dict(e) for e in known.get("third_party") or () if isinstance(e, dict))
        return cls(**known)


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
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    cluster: dict[str, Any] = field(default_factory=dict)
    promoted_from: str | None = None
    promotion_proof: str = ""  # what proved every promoted digest passed where it came from
    resumed_from: str | None = None
    applied: tuple[str, ...] = ()
    interrupted_during: str | None = None
    rollback: dict[str, Any] = field(default_factory=dict)
    # What the environment let the release write outside its namespace, by name.
    outside_namespace: tuple[str, ...] = ()
    # Every policy the environment relaxed, per service: service, policy, reason, where (file:line).
    relaxed_policies: tuple[dict[str, Any], ...] = ()
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
        data["relaxed_policies"] = [dict(p) for p in self.relaxed_policies]
        return data

    def to_json(self) -> str:
        """Stable, indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class PassedRelease:
    """One release that passed, as the environment's own record keeps it."""

    run_id: str
    finished: str
    digests: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # service -> the images no service builds, as that release pinned them (a promotion runs these)
    third_party: Mapping[str, tuple[dict[str, str], ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, record: ReleaseRecord) -> PassedRelease:
        """The history entry of a passed ``record``."""
        return cls(
            record.run_id,
            record.finished,
            record.digests(),
            {n: s.source for n, s in record.services.items()},
            {n: s.third_party for n, s in record.services.items() if s.third_party},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the ConfigMap."""
        return {
            "run_id": self.run_id,
            "finished": self.finished,
            "digests": dict(self.digests),
            "sources": dict(self.sources),
            "third_party": {name: [dict(e) for e in entries] for name, entries in self.third_party.items()},
        }


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
    known["services"] = {name: ServiceRecord.from_dict({**svc, "name": name}) for name, svc in data["services"].items()}
    known.setdefault("started", "")
    known.setdefault("finished", "")
    known["applied"] = tuple(known.get("applied") or ())
    known["outside_namespace"] = tuple(known.get("outside_namespace") or ())
    known["relaxed_policies"] = tuple(dict(p) for p in known.get("relaxed_policies") or () if isinstance(p, dict))
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
